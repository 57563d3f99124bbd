/**
 * How the client commands talk to a timestore server: bearer token, the server's one error shape,
 * and retries of answers that say "try again" (429, 503, a dropped connection).
 */

/** An error answer of the server, or a server that could not be reached: printed as `code: message`. */
export class ServerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface Endpoint {
  url: string;
  token?: string;
}

const RETRIES = 5;

/** Sends one request, retrying answers that are safe to repeat; returns the successful response. */
export async function send(endpoint: Endpoint, path: string, init: RequestInit & { retry?: boolean } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (endpoint.token) headers.set('authorization', `Bearer ${endpoint.token}`);
  const target = `${endpoint.url.replace(/\/+$/, '')}${path}`;
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(target, { ...init, headers });
    } catch (err) {
      if (init.retry && attempt < RETRIES) {
        await sleep(backoffMs(attempt, null));
        continue;
      }
      throw new ServerError(0, 'unreachable', `${target}: ${(err as Error).message}`);
    }
    if (res.ok) return res;
    if (init.retry && attempt < RETRIES && (res.status === 429 || res.status === 503)) {
      await res.body?.cancel();
      await sleep(backoffMs(attempt, res.headers.get('retry-after')));
      continue;
    }
    throw await errorOf(res);
  }
}

async function errorOf(res: Response): Promise<ServerError> {
  const text = await res.text();
  try {
    const { error } = JSON.parse(text) as { error: { code: string; message: string } };
    return new ServerError(res.status, error.code, error.message);
  } catch {
    return new ServerError(res.status, `http_${res.status}`, text.slice(0, 500) || res.statusText);
  }
}

function backoffMs(attempt: number, retryAfter: string | null): number {
  const seconds = Number(retryAfter);
  if (retryAfter && Number.isFinite(seconds)) return Math.min(seconds, 30) * 1000;
  return Math.min(250 * 2 ** attempt, 10_000);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
