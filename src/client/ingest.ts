/**
 * `timestore ingest`: sends files (or stdin) to a server in batches, several in flight.
 *
 * Every batch of the ingest route carries an idempotency key made of the input's identity and the
 * batch's offset, so a run that was interrupted is resumed by running it again: the batches the
 * server already accepted are answered as replays and stored once. Line protocol goes to
 * `/api/v2/write` (each measurement names its dataset), with its idempotency key too.
 */
import { type Endpoint, send } from './http.ts';
import { startProgress } from './progress.ts';
import { type Batch, CONTENT_TYPES, type Input, readBatches } from './sources.ts';

export interface IngestOptions {
  endpoint: Endpoint;
  dataset: string | undefined;
  inputs: Input[];
  batchRows: number;
  concurrency: number;
  /** Partition key fields, sent as `key.<name>` query parameters. */
  partitionKey: Record<string, string>;
  precision: string;
}

export interface IngestSummary {
  rows: number;
  batches: number;
  replayed: number;
  seconds: number;
}

export async function runIngest(options: IngestOptions): Promise<IngestSummary> {
  const started = performance.now();
  const knownSizes = options.inputs.every((i) => i.size !== null);
  const total = knownSizes ? options.inputs.reduce((sum, i) => sum + (i.size as number), 0) : null;
  const progress = startProgress(total);
  const summary = { rows: 0, batches: 0, replayed: 0, seconds: 0 };
  let before = 0; // bytes of the inputs already finished
  try {
    for (const input of options.inputs) {
      let reached = 0;
      const inFlight = new Set<Promise<void>>();
      let failure: unknown = null;
      for await (const batch of readBatches(input, options.batchRows)) {
        const sending: Promise<void> = sendBatch(options, input, batch).then(
          (replayed) => {
            summary.rows += batch.rows;
            summary.batches += 1;
            if (replayed) summary.replayed += 1;
            reached = Math.max(reached, batch.position);
            progress.update(before + reached, summary.rows);
          },
          (err) => {
            failure ??= err;
          },
        );
        const tracked = sending.finally(() => inFlight.delete(tracked));
        inFlight.add(tracked);
        if (inFlight.size >= options.concurrency) await Promise.race(inFlight);
        if (failure) break;
      }
      await Promise.all(inFlight);
      if (failure) throw failure;
      before += input.size ?? 0;
    }
  } finally {
    progress.stop();
  }
  summary.seconds = (performance.now() - started) / 1000;
  return summary;
}

/** Sends one batch; true when the server answered it as a replay of an earlier request. */
async function sendBatch(options: IngestOptions, input: Input, batch: Batch): Promise<boolean> {
  if (input.format === 'lp') {
    const res = await send(options.endpoint, `/api/v2/write?precision=${encodeURIComponent(options.precision)}`, {
      method: 'POST',
      headers: { 'content-type': CONTENT_TYPES.lp, 'idempotency-key': batch.idempotencyKey },
      body: batch.body,
      retry: true,
    });
    return res.headers.get('x-timestore-replayed') === 'true';
  }
  const query = new URLSearchParams(Object.entries(options.partitionKey).map(([name, value]): [string, string] => [`key.${name}`, value]));
  const res = await send(options.endpoint, `/datasets/${encodeURIComponent(options.dataset as string)}/ingest${query.size ? `?${query}` : ''}`, {
    method: 'POST',
    headers: { 'content-type': CONTENT_TYPES[input.format], 'idempotency-key': batch.idempotencyKey },
    body: batch.body,
    retry: true,
  });
  const answer = (await res.json()) as { replayed?: boolean };
  return answer.replayed === true;
}
