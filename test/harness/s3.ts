/**
 * A real S3-compatible server (Ceph radosgw) for tests.
 *
 * startS3Server() starts a throwaway single-node Ceph cluster through ./s3-server.sh (about 1 s,
 * ~105 MB RSS, objects kept in memory), or, when TIMESTORE_TEST_S3_ENDPOINT is set, returns that
 * already-running server instead (stop() is then a no-op):
 *
 *   TIMESTORE_TEST_S3_ENDPOINT           e.g. http://127.0.0.1:7480
 *   TIMESTORE_TEST_S3_ACCESS_KEY_ID      default timestore-test
 *   TIMESTORE_TEST_S3_SECRET_ACCESS_KEY  default timestore-test-secret
 *   TIMESTORE_TEST_S3_REGION             default us-east-1
 *
 * Clients must use path-style addressing (forcePathStyle: true in @aws-sdk/client-s3).
 * Known radosgw quirk: CompleteMultipartUpload answers an empty ETag; HeadObject has the real one.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { freePortAsync as freePort } from "./ports.ts";

export interface S3Server {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** Stops the daemons and removes their directory. Safe to call more than once. */
  stop(): Promise<void>;
  /** An outage: stops the S3 gateway (radosgw) and keeps every object; `resume` starts it again. */
  halt(): Promise<void>;
  resume(): Promise<void>;
}

const SCRIPT = fileURLToPath(new URL("./s3-server.sh", import.meta.url));
const ACCESS_KEY_ID = "timestore-test";
const SECRET_ACCESS_KEY = "timestore-test-secret";
const DEFAULT_REGION = "us-east-1";
const START_TIMEOUT_MS = 120_000; // the script bounds itself (~60 s + admin commands); this is a backstop

/** True if an S3 server can be had: an external one is configured, or radosgw is on PATH. */
export function s3Available(): boolean {
  return Boolean(process.env.TIMESTORE_TEST_S3_ENDPOINT) || Bun.which("radosgw") !== null;
}

export async function startS3Server(): Promise<S3Server> {
  const external = process.env.TIMESTORE_TEST_S3_ENDPOINT;
  if (external) {
    return {
      endpoint: external.replace(/\/+$/, ""),
      accessKeyId: process.env.TIMESTORE_TEST_S3_ACCESS_KEY_ID ?? ACCESS_KEY_ID,
      secretAccessKey: process.env.TIMESTORE_TEST_S3_SECRET_ACCESS_KEY ?? SECRET_ACCESS_KEY,
      region: process.env.TIMESTORE_TEST_S3_REGION ?? DEFAULT_REGION,
      stop: async () => {},
      halt: uncontrolled,
      resume: uncontrolled,
    };
  }

  // Another process may grab a port between freePort() and a daemon binding it, and on a loaded
  // machine a daemon may fail its start; each attempt starts afresh in a new directory.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startLocal(await freePort());
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startLocal(port: number): Promise<S3Server> {
  // mkdtemp gives a unique, empty directory; the script fills it and `stop` removes it.
  const dir = mkdtempSync(join(tmpdir(), "timestore-s3-"));
  let stopped = false;

  const stopSync = () => {
    if (stopped) return;
    stopped = true;
    Bun.spawnSync(["bash", SCRIPT, "stop", dir], { stdout: "ignore", stderr: "ignore" });
    rmSync(dir, { recursive: true, force: true }); // in case start failed before marking DIR
  };
  // Do not leak daemons if the test process exits without calling stop().
  process.once("exit", stopSync);

  const stop = async () => {
    if (stopped) return;
    process.off("exit", stopSync);
    stopped = true;
    const proc = Bun.spawn(["bash", SCRIPT, "stop", dir], { stdout: "ignore", stderr: "pipe" });
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    rmSync(dir, { recursive: true, force: true });
    if (code !== 0) throw new Error(`s3-server.sh stop failed (exit ${code}): ${stderr.trim()}`);
  };

  const proc = Bun.spawn(["bash", SCRIPT, "start", dir, String(port)], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), START_TIMEOUT_MS);
  const [code, stdout, stderr] = await Promise.all([
    proc.exited,
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
  ]);
  clearTimeout(timer);

  const endpoint = /^S3_ENDPOINT=(\S+)$/m.exec(stdout)?.[1];
  if (code !== 0 || !endpoint) {
    await stop().catch(() => {});
    const message = `s3-server.sh start failed (exit ${code}${proc.signalCode ? `, ${proc.signalCode}` : ""}):\n${stderr.trim()}`;
    throw new Error(message);
  }

  const gateway = async (...args: string[]) => {
    const run = Bun.spawn(["bash", SCRIPT, ...args], { stdout: "ignore", stderr: "pipe" });
    const [exit, err] = await Promise.all([run.exited, new Response(run.stderr).text()]);
    if (exit !== 0) throw new Error(`s3-server.sh ${args[0]} failed (exit ${exit}): ${err.trim()}`);
  };
  return {
    endpoint,
    accessKeyId: ACCESS_KEY_ID,
    secretAccessKey: SECRET_ACCESS_KEY,
    region: DEFAULT_REGION,
    stop,
    halt: () => gateway("gateway-stop", dir),
    resume: () => gateway("gateway-start", dir, String(port)),
  };
}

async function uncontrolled(): Promise<never> {
  throw new Error("TIMESTORE_TEST_S3_ENDPOINT names a server the tests do not control");
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it). */

/** An S3 client for test set-up (buckets, listings) on the harness server. */
export function s3AdminClient(server: S3Server): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
  });
}

/** Creates a bucket named `<prefix>-<random>` on the harness server and returns its name. */
export async function createBucket(server: S3Server, prefix: string): Promise<string> {
  const bucket = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  const client = s3AdminClient(server);
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return bucket;
}

/** The TIMESTORE_* variables of a server whose default storage is `bucket` on the harness S3 server. */
export function s3ServerEnv(server: S3Server, bucket: string): Record<string, string> {
  return {
    TIMESTORE_STORAGE_DRIVER: 's3',
    TIMESTORE_S3_BUCKET: bucket,
    TIMESTORE_S3_ENDPOINT: server.endpoint,
    TIMESTORE_S3_REGION: server.region,
    TIMESTORE_S3_ACCESS_KEY_ID: server.accessKeyId,
    TIMESTORE_S3_SECRET_ACCESS_KEY: server.secretAccessKey,
    TIMESTORE_S3_FORCE_PATH_STYLE: 'true',
  };
}
