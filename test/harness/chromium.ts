/**
 * Headless Chromium for browser tests, driven over the DevTools protocol with
 * Bun's WebSocket: load a page, wait until its scripts produced what the test
 * waits for, and return the rendered DOM plus every request the page made.
 *
 * Offline by construction: every request that is not to loopback goes to a
 * black-hole proxy run by this process, which refuses it (403) and logs it;
 * the host-resolver rules are a second fence. So a page that renders here
 * needed nothing beyond loopback. Chromium's own background traffic (update
 * checks and the like, which flags do not fully silence) also hits the proxy;
 * it shows in `proxyLog` but not in `externalRequests`, which lists only what
 * the page itself asked for (from the protocol's Network events).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** /usr/bin/chromium (Debian's package) or the first chromium-like binary on PATH; null if none. */
export function chromiumPath(): string | null {
  if (existsSync('/usr/bin/chromium')) return '/usr/bin/chromium';
  const names = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    for (const name of names) {
      const candidate = join(dir, name);
      if (existsSync(candidate)) return candidate;
    }
  }
  return null;
}

export interface RenderOptions {
  /**
   * A JavaScript expression evaluated in the page after `load`, every 100 ms,
   * until it is truthy; renderPage throws (with the page's errors) if it never is.
   * Without it the page gets `settleMs` after `load`.
   */
  waitFor?: string;
  /** Time after `load` when there is no `waitFor`; default 500 ms. */
  settleMs?: number;
  /** Wall-clock limit for the whole run, browser start included; default 30 s. */
  timeoutMs?: number;
  /**
   * Extra host names that resolve to 127.0.0.1 and bypass the proxy, to load a
   * page the way a deployed server is addressed (not "localhost"/"127.0.0.1").
   */
  loopbackAliases?: string[];
}

export interface RenderResult {
  /** `document.documentElement.outerHTML` once `waitFor` held. */
  dom: string;
  /** Every network request the page made (URLs; data:/blob: left out). */
  requests: string[];
  /** The page's requests to hosts other than loopback (all of them refused). */
  externalRequests: string[];
  /** Page requests that failed, as `url: error`. */
  failedRequests: string[];
  /** Uncaught exceptions and console errors in the page. */
  pageErrors: string[];
  /** Request lines the black-hole proxy refused (the page's and Chromium's own). */
  proxyLog: string[];
  durationMs: number;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A local "proxy" that refuses and records every request sent to it. */
async function startBlackHoleProxy() {
  const log: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (chunk) => {
      if (head.includes('\r\n')) return;
      head += chunk.toString('latin1');
      const end = head.indexOf('\r\n');
      if (end < 0 && head.length < 8192) return;
      log.push((end < 0 ? head : head.slice(0, end)).replace(/ HTTP\/1\.[01]$/, ''));
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

type Json = any;

/** A minimal DevTools protocol client over one browser WebSocket (flat sessions). */
async function connectCdp(wsUrl: string) {
  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`cannot connect to ${wsUrl}`)), { once: true });
  });
  let nextId = 1;
  const pending = new Map<number, { resolve(v: Json): void; reject(e: Error): void; method: string }>();
  const listeners: ((message: Json) => void)[] = [];
  ws.addEventListener('message', (event) => {
    const message = JSON.parse(String(event.data));
    if (message.id !== undefined) {
      const call = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) call?.reject(new Error(`${call.method}: ${message.error.message}`));
      else call?.resolve(message.result);
    } else {
      for (const listener of listeners) listener(message);
    }
  });
  ws.addEventListener('close', () => {
    for (const call of pending.values()) call.reject(new Error(`${call.method}: browser connection closed`));
    pending.clear();
  });
  return {
    send(method: string, params: Json = {}, sessionId?: string): Promise<Json> {
      const id = nextId++;
      ws.send(JSON.stringify({ id, method, params, sessionId }));
      return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
    },
    on(listener: (message: Json) => void) {
      listeners.push(listener);
    },
    close: () => ws.close(),
  };
}

function withDeadline<T>(promise: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Loads `url` in a fresh headless Chromium (new empty profile, no network
 * beyond loopback) and returns the DOM once `waitFor` holds. Throws if
 * Chromium is missing, fails or runs out of time. Always kills the browser's
 * whole process group and removes the profile.
 */
export async function renderPage(url: string, options: RenderOptions = {}): Promise<RenderResult> {
  const binary = chromiumPath();
  if (!binary) throw new Error('chromium not found: install Debian\'s package "chromium" (apt-get install -y chromium)');
  const started = Date.now();
  const deadline = started + (options.timeoutMs ?? 30_000);
  const aliases = options.loopbackAliases ?? [];
  const isLoopback = (host: string) => LOOPBACK_HOSTS.has(host) || aliases.includes(host);

  const proxy = await startBlackHoleProxy();
  const profile = mkdtempSync(join(tmpdir(), 'timestore-chromium-'));
  const resolverRules = [
    ...aliases.map((host) => `MAP ${host} 127.0.0.1`),
    'MAP * ~NOTFOUND',
    'EXCLUDE 127.0.0.1',
    'EXCLUDE localhost',
  ].join(', ');
  const proc = Bun.spawn(
    [
      binary,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
      '--disable-extensions',
      '--disable-default-apps',
      '--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter',
      '--no-pings',
      `--user-data-dir=${profile}`,
      `--proxy-server=http://127.0.0.1:${proxy.port}`,
      ...(aliases.length ? [`--proxy-bypass-list=${aliases.join(';')}`] : []),
      `--host-resolver-rules=${resolverRules}`,
      '--remote-debugging-address=127.0.0.1',
      '--remote-debugging-port=0',
      'about:blank',
    ],
    {
      stdin: 'ignore',
      stdout: 'ignore',
      stderr: 'pipe',
      detached: true, // its own process group, killed as a whole at the end
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: profile, TMPDIR: profile },
    },
  );
  let stderr = '';
  const stderrDone = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  const describe = (message: string) => {
    // Without a D-Bus, Chromium logs a screenful of harmless D-Bus errors; leave them out.
    const log = stderr.split('\n').filter((line) => line && !/dbus/i.test(line));
    return new Error(`${message} (after ${Date.now() - started} ms)\nchromium stderr (tail):\n${log.slice(-20).join('\n')}`);
  };

  let cdp: Awaited<ReturnType<typeof connectCdp>> | undefined;
  try {
    // Chromium writes "<port>\n<browser ws path>" here once it listens.
    const activePort = join(profile, 'DevToolsActivePort');
    let wsUrl = '';
    while (!wsUrl) {
      if (proc.exitCode !== null) throw describe(`chromium exited with ${proc.exitCode} before DevTools was up`);
      if (Date.now() > deadline) throw describe('chromium did not open its DevTools port');
      const [port, path] = existsSync(activePort) ? readFileSync(activePort, 'utf8').split('\n') : [];
      if (port && path) wsUrl = `ws://127.0.0.1:${port}${path}`;
      else await Bun.sleep(25);
    }
    cdp = await withDeadline(connectCdp(wsUrl), deadline, 'DevTools connection');
    const browser = cdp;

    const requests: string[] = [];
    const externalRequests: string[] = [];
    const failedRequests: string[] = [];
    const pageErrors: string[] = [];
    const urls = new Map<string, string>();
    let sessionId = '';
    let loaded: () => void = () => {};
    const loadFired = new Promise<void>((resolve) => {
      loaded = resolve;
    });
    browser.on((message) => {
      if (message.sessionId !== sessionId) return;
      const p = message.params;
      switch (message.method) {
        case 'Network.requestWillBeSent': {
          const requestUrl: string = p.request.url;
          if (/^(data|blob|about):/.test(requestUrl)) break;
          urls.set(p.requestId, requestUrl);
          requests.push(requestUrl);
          try {
            if (!isLoopback(new URL(requestUrl).host.replace(/:\d+$/, ''))) externalRequests.push(requestUrl);
          } catch {
            externalRequests.push(requestUrl);
          }
          break;
        }
        case 'Network.loadingFailed':
          if (urls.has(p.requestId)) failedRequests.push(`${urls.get(p.requestId)}: ${p.errorText}`);
          break;
        case 'Runtime.exceptionThrown':
          pageErrors.push(p.exceptionDetails.exception?.description ?? p.exceptionDetails.text);
          break;
        case 'Runtime.consoleAPICalled':
          if (p.type === 'error' || p.type === 'assert') {
            pageErrors.push(p.args.map((a: Json) => a.value ?? a.description ?? '').join(' '));
          }
          break;
        case 'Log.entryAdded':
          if (p.entry.level === 'error') pageErrors.push(`${p.entry.text}${p.entry.url ? ` (${p.entry.url})` : ''}`);
          break;
        case 'Page.loadEventFired':
          loaded();
          break;
      }
    });

    const step = <T>(what: string, promise: Promise<T>) => withDeadline(promise, deadline, what);
    const { targetId } = await step('Target.createTarget', browser.send('Target.createTarget', { url: 'about:blank' }));
    ({ sessionId } = await step('attach', browser.send('Target.attachToTarget', { targetId, flatten: true })));
    for (const domain of ['Network', 'Page', 'Runtime', 'Log']) {
      await step(`${domain}.enable`, browser.send(`${domain}.enable`, {}, sessionId));
    }
    const evaluate = async (expression: string) => {
      const { result, exceptionDetails } = await step(
        'Runtime.evaluate',
        browser.send('Runtime.evaluate', { expression, returnByValue: true }, sessionId),
      );
      if (exceptionDetails) throw new Error(exceptionDetails.exception?.description ?? exceptionDetails.text);
      return result.value;
    };

    const navigation = await step('Page.navigate', browser.send('Page.navigate', { url }, sessionId));
    if (navigation.errorText) throw describe(`navigation to ${url} failed: ${navigation.errorText}`);
    await step(`load event of ${url}`, loadFired);
    if (options.waitFor) {
      // Stop waiting a little before the deadline, to leave time to describe the page.
      const waitUntil = deadline - Math.min(3000, (deadline - started) / 4);
      while (!(await evaluate(`Boolean(${options.waitFor})`))) {
        if (Date.now() > waitUntil) {
          const body = String(await evaluate('document.body ? document.body.outerHTML : ""')).slice(0, 2000);
          throw describe(
            `page ${url} never satisfied: ${options.waitFor}\n` +
              `page errors: ${JSON.stringify(pageErrors)}\nfailed requests: ${JSON.stringify(failedRequests)}\n` +
              `requests: ${JSON.stringify(requests)}\nbody: ${body}`,
          );
        }
        await Bun.sleep(100);
      }
    } else {
      await Bun.sleep(Math.min(options.settleMs ?? 500, Math.max(0, deadline - Date.now())));
    }
    const dom = String(await evaluate('document.documentElement.outerHTML'));
    return {
      dom,
      requests,
      externalRequests,
      failedRequests,
      pageErrors,
      proxyLog: [...proxy.log],
      durationMs: Date.now() - started,
    };
  } catch (error) {
    if (error instanceof Error && error.message.startsWith('timed out:')) throw describe(error.message);
    throw error;
  } finally {
    cdp?.close();
    try {
      process.kill(-proc.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await proc.exited;
    await stderrDone.catch(() => {});
    await proxy.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
