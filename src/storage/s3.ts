/**
 * S3 storage driver (@aws-sdk/client-s3): objects live in a bucket under the target's prefix,
 * locations are `s3://bucket/<prefix>/<key>` URIs (keys are not percent-encoded).
 *
 * - Endpoint, region and path style come from the target's config, falling back to the process
 *   configuration (TIMESTORE_S3_*), then to AWS (`us-east-1`). Credentials are the target's own
 *   registered keys over the process configuration's (storage/index.ts merges them); without an
 *   access key the SDK's default provider chain is used.
 * - Uploads are one PutObject up to `multipartThresholdBytes`, else a multipart upload of
 *   `partSizeBytes` parts, a few in flight, aborted when any step fails. Each part is read into a
 *   buffer, so memory stays bounded by part size × concurrency and the SDK can checksum it in a
 *   header (radosgw does not take the streaming, trailer-checksummed bodies the SDK sends for streams).
 * - Downloads stream to disk; `read` buffers and is meant for small objects.
 * - radosgw answers CompleteMultipartUpload with an empty ETag, so nothing here relies on it; the
 *   object's size is checked with HeadObject instead.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import type { S3TargetConfig } from '../model/records.ts';
import type { Config } from '../config.ts';
import {
  describeCause,
  describeProbeStep,
  keyProblem,
  StorageError,
  type ListedObject,
  type ListOptions,
  type PutFileOptions,
  type StorageDriver,
  type StoredObject,
  probeRoundTrip,
} from './driver.ts';

const MiB = 1024 * 1024;
const MIN_PART_BYTES = 5 * MiB; // S3's minimum for every part but the last
const MAX_PARTS = 10_000;
const MAX_OBJECT_KEY_BYTES = 1024;

export type S3Credentials = Config['s3'];

export interface S3DriverOptions {
  /** Objects larger than this are uploaded in parts. Default 16 MiB. */
  multipartThresholdBytes?: number;
  /** Part size (at least 5 MiB; raised when the file would need more than 10,000 parts). Default 16 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once. Default 4. */
  partConcurrency?: number;
}

export class S3StorageDriver implements StorageDriver {
  readonly kind = 's3' as const;
  readonly bucket: string;
  /** "" or a prefix ending in "/". */
  readonly prefix: string;
  private readonly client: S3Client;
  private readonly endpoint: string | undefined;
  private readonly multipartThreshold: number;
  private readonly partSize: number;
  private readonly partConcurrency: number;

  constructor(
    readonly name: string,
    config: S3TargetConfig,
    credentials: Partial<S3Credentials> | null,
    options: S3DriverOptions = {},
  ) {
    this.bucket = config.bucket;
    const prefix = (config.prefix ?? '').replace(/^\/+|\/+$/g, '');
    const problem = keyProblem(prefix, 'prefix');
    if (problem) throw new StorageError('configure', name, `s3://${config.bucket}/${prefix}`, 'invalid_key', `bad target prefix: ${problem}`);
    this.prefix = prefix ? `${prefix}/` : '';
    this.multipartThreshold = options.multipartThresholdBytes ?? 16 * MiB;
    this.partSize = Math.max(MIN_PART_BYTES, options.partSizeBytes ?? 16 * MiB);
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 4);

    this.endpoint = config.endpoint ?? credentials?.endpoint ?? undefined;
    this.client = new S3Client({
      endpoint: this.endpoint,
      region: config.region ?? credentials?.region ?? 'us-east-1',
      forcePathStyle: config.forcePathStyle ?? credentials?.forcePathStyle ?? false,
      credentials: credentials?.accessKeyId
        ? {
            accessKeyId: credentials.accessKeyId,
            secretAccessKey: credentials.secretAccessKey ?? '',
            sessionToken: credentials.sessionToken ?? undefined,
          }
        : undefined,
      // Fail fast on an unreachable endpoint; requestTimeout is the socket's idle time, not a total.
      requestHandler: { connectionTimeout: 10_000, requestTimeout: 120_000 },
    });
  }

  locationOf(key: string): string {
    return this.uri(this.objectKey(key, 'locate'));
  }

  async putFile(key: string, sourcePath: string, options: PutFileOptions = {}): Promise<StoredObject> {
    const objectKey = this.objectKey(key, 'put');
    const location = this.uri(objectKey);
    const stored = await this.guard('put', location, async () => {
      const handle = await open(sourcePath, 'r').catch((err) => {
        throw new Error(`cannot read the source file: ${describeCause(err)}`, { cause: err });
      });
      try {
        const size = (await handle.stat()).size;
        const readRange = (offset: number, length: number) => readExactly(handle, offset, length, sourcePath);
        await this.upload(objectKey, size, readRange);
        return { location, sizeBytes: size };
      } finally {
        await handle.close();
      }
    });
    if (options.move) {
      await unlink(sourcePath).catch((err) => {
        throw new StorageError('put', this.name, location, 'failed', `stored, but removing the source ${sourcePath} failed: ${describeCause(err)}`, {
          cause: err,
        });
      });
    }
    return stored;
  }

  async putBytes(key: string, object: Uint8Array | readonly Uint8Array[]): Promise<StoredObject> {
    const bytes = Array.isArray(object) ? Buffer.concat(object) : (object as Uint8Array);
    const objectKey = this.objectKey(key, 'put');
    const location = this.uri(objectKey);
    return this.guard('put', location, async () => {
      await this.upload(objectKey, bytes.byteLength, async (offset, length) => bytes.subarray(offset, offset + length));
      return { location, sizeBytes: bytes.byteLength };
    });
  }

  async materialize(location: string, destPath: string): Promise<string> {
    const Key = this.keyOfLocation(location, 'materialize');
    return this.guard('materialize', location, async () => {
      await mkdir(dirname(destPath), { recursive: true });
      const tmp = join(dirname(destPath), `.${basename(destPath)}.tmp-${randomBytes(6).toString('hex')}`);
      try {
        const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
        if (!answer.Body) throw new Error('GetObject answered without a body');
        const body = answer.Body instanceof Readable ? answer.Body : Readable.fromWeb(answer.Body.transformToWebStream() as never);
        const handle = await open(tmp, 'wx');
        let written = 0;
        try {
          for await (const chunk of body as AsyncIterable<Uint8Array>) {
            await handle.write(chunk);
            written += chunk.byteLength;
          }
          if (answer.ContentLength !== undefined && written !== answer.ContentLength) {
            throw new Error(`download ended after ${written} of ${answer.ContentLength} bytes`);
          }
          await handle.sync(); // the final name must only ever hold a complete file
        } finally {
          await handle.close();
          if (!body.destroyed) body.destroy();
        }
        await rename(tmp, destPath);
        return destPath;
      } catch (err) {
        await unlink(tmp).catch(() => {});
        throw err;
      }
    });
  }

  async read(location: string): Promise<Uint8Array> {
    const Key = this.keyOfLocation(location, 'read');
    return this.guard('read', location, async () => {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key }));
      if (!answer.Body) throw new Error('GetObject answered without a body');
      return answer.Body.transformToByteArray();
    });
  }

  async delete(location: string): Promise<void> {
    const Key = this.keyOfLocation(location, 'delete');
    await this.guard('delete', location, async () => {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }));
    });
  }

  async exists(location: string): Promise<boolean> {
    const Key = this.keyOfLocation(location, 'exists');
    return this.guard('exists', location, async () => {
      try {
        await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
        return true;
      } catch (err) {
        if (isNotFound(err) && !isNoSuchBucket(err)) return false;
        throw err;
      }
    });
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ListedObject> {
    const problem = keyProblem(prefix, 'prefix');
    const Prefix = `${this.prefix}${prefix}`;
    if (problem) throw new StorageError('list', this.name, this.uri(Prefix), 'invalid_key', problem);
    const MaxKeys = options.pageSize === undefined ? undefined : Math.min(1000, Math.max(1, options.pageSize));
    let ContinuationToken: string | undefined;
    do {
      const page = await this.guard('list', this.uri(Prefix), () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix, MaxKeys, ContinuationToken })),
      );
      for (const object of page.Contents ?? []) {
        if (!object.Key?.startsWith(this.prefix)) continue;
        yield {
          location: this.uri(object.Key),
          key: object.Key.slice(this.prefix.length),
          sizeBytes: object.Size ?? 0,
          lastModified: object.LastModified ?? new Date(0),
        };
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && !ContinuationToken) {
        throw new StorageError('list', this.name, this.uri(Prefix), 'failed', 'a truncated ListObjectsV2 page carried no continuation token');
      }
    } while (ContinuationToken);
  }

  async probe(): Promise<void> {
    try {
      await probeRoundTrip(this);
    } catch (err) {
      const where = this.endpoint ? ` at ${this.endpoint}` : '';
      throw new StorageError(
        'probe',
        this.name,
        this.uri(this.prefix),
        'failed',
        `bucket "${this.bucket}"${where} is not writable: ${describeProbeStep(err)}`,
        { cause: err },
      );
    }
  }

  close(): void {
    this.client.destroy();
  }

  /** One PutObject, or a multipart upload that is aborted when any step fails. */
  private async upload(Key: string, size: number, readRange: (offset: number, length: number) => Promise<Uint8Array>): Promise<void> {
    if (size <= this.multipartThreshold) {
      const Body = await readRange(0, size);
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key, Body, ContentLength: size }));
      return;
    }

    const partSize = Math.max(this.partSize, Math.ceil(size / MAX_PARTS / MiB) * MiB);
    const partCount = Math.ceil(size / partSize);
    const { UploadId } = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key }));
    if (!UploadId) throw new Error('CreateMultipartUpload answered without an UploadId');
    try {
      const parts: CompletedPart[] = new Array(partCount);
      let next = 0;
      let failed = false;
      const worker = async () => {
        while (!failed && next < partCount) {
          const index = next++;
          const offset = index * partSize;
          const PartNumber = index + 1;
          try {
            const Body = await readRange(offset, Math.min(partSize, size - offset));
            const { ETag } = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key, UploadId, PartNumber, Body }));
            if (!ETag) throw new Error(`UploadPart ${PartNumber} answered without an ETag`);
            parts[index] = { ETag, PartNumber };
          } catch (err) {
            failed = true;
            throw err;
          }
        }
      };
      const results = await Promise.allSettled(Array.from({ length: Math.min(this.partConcurrency, partCount) }, worker));
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (rejected) throw rejected.reason;

      // radosgw quirk: the answer's ETag is empty; the size check below does not depend on it.
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId, MultipartUpload: { Parts: parts } }),
      );
    } catch (err) {
      try {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId }));
      } catch (abortErr) {
        throw new Error(`${describeCause(err)} (aborting upload ${UploadId} also failed: ${describeCause(abortErr)})`, { cause: err });
      }
      throw err;
    }
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key }));
    if (head.ContentLength !== size) throw new Error(`multipart upload stored ${head.ContentLength} bytes, expected ${size}`);
  }

  private objectKey(key: string, operation: string): string {
    const problem = keyProblem(key) ?? this.lengthProblem(key);
    if (problem) throw new StorageError(operation, this.name, this.uri(`${this.prefix}${key}`), 'invalid_key', problem);
    return `${this.prefix}${key}`;
  }

  private lengthProblem(key: string): string | null {
    const bytes = Buffer.byteLength(this.prefix) + Buffer.byteLength(key);
    return bytes > MAX_OBJECT_KEY_BYTES ? `the object key (the target's prefix and the key) would be ${bytes} bytes; S3 takes at most ${MAX_OBJECT_KEY_BYTES}` : null;
  }

  /** The object key for an `s3://` location of this target's bucket and prefix. */
  private keyOfLocation(location: string, operation: string): string {
    const head = `s3://${this.bucket}/${this.prefix}`;
    if (!location.startsWith(head)) {
      throw new StorageError(operation, this.name, location, 'foreign_location', `the location is not under ${head}`);
    }
    const key = location.slice(head.length);
    const problem = keyProblem(key);
    if (problem) throw new StorageError(operation, this.name, location, 'invalid_key', problem);
    return `${this.prefix}${key}`;
  }

  private uri(objectKey: string): string {
    return `s3://${this.bucket}/${objectKey}`;
  }

  private async guard<T>(operation: string, location: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof StorageError) throw err;
      const missing = isNotFound(err) && !isNoSuchBucket(err) && operation !== 'put';
      const detail = missing ? 'the object does not exist' : describeCause(err);
      throw new StorageError(operation, this.name, location, missing ? 'not_found' : 'failed', detail, { cause: err });
    }
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return e?.name === 'NoSuchKey' || e?.name === 'NotFound' || e?.$metadata?.httpStatusCode === 404;
}

function isNoSuchBucket(err: unknown): boolean {
  return (err as { name?: string } | undefined)?.name === 'NoSuchBucket';
}

/** Reads exactly `length` bytes at `offset` (a file that shrank while uploading is an error). */
async function readExactly(handle: FileHandle, offset: number, length: number, path: string): Promise<Uint8Array> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, offset + filled);
    if (bytesRead === 0) throw new Error(`${path} ended at ${offset + filled} bytes while being uploaded`);
    filled += bytesRead;
  }
  return buffer;
}
