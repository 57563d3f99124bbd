/** Storage drivers for catalog storage targets: `createStorageDriver` and a per-target cache. */
import type { LocalTargetConfig, S3TargetConfig, StorageTarget } from '../model/records.ts';
import { StorageError, type StorageDriver } from './driver.ts';
import { LocalStorageDriver } from './local.ts';
import { S3StorageDriver, type S3Credentials, type S3DriverOptions } from './s3.ts';

export * from './driver.ts';
export { LocalStorageDriver } from './local.ts';
export { S3StorageDriver, type S3Credentials, type S3DriverOptions } from './s3.ts';

type TargetLike = Pick<StorageTarget, 'name' | 'kind' | 'config'> & { credentials?: StorageTarget['credentials'] };

/**
 * The driver for a storage target. An S3 target registered with its own keys uses them; others
 * take credentials from the process configuration (`config.s3`), or the SDK's default chain when
 * no access key is set there either.
 */
export function createStorageDriver(
  target: TargetLike,
  s3Credentials: Partial<S3Credentials> | null,
  s3Options?: S3DriverOptions,
): StorageDriver {
  switch (target.kind) {
    case 'local': {
      const config = target.config as LocalTargetConfig;
      if (!config.root) throw new StorageError('configure', target.name, '(no root)', 'failed', 'a local target needs config.root');
      return new LocalStorageDriver(target.name, config);
    }
    case 's3': {
      const config = target.config as S3TargetConfig;
      if (!config.bucket) throw new StorageError('configure', target.name, 's3://', 'failed', 'an s3 target needs config.bucket');
      const credentials = target.credentials ? { ...s3Credentials, ...target.credentials } : s3Credentials;
      return new S3StorageDriver(target.name, config, credentials, s3Options);
    }
    default:
      throw new StorageError('configure', target.name, '(unknown)', 'failed', `unknown storage target kind "${String(target.kind)}"`);
  }
}

/**
 * One driver per storage target id (so one S3 client, with its connection pool, per target). A
 * target whose kind or config changed gets a fresh driver; the old one may still be in use by
 * running operations, so it is closed only by `close()`.
 */
export class StorageDrivers {
  private readonly drivers = new Map<string, { fingerprint: string; driver: StorageDriver }>();
  private readonly retired: StorageDriver[] = [];

  constructor(
    private readonly s3Credentials: Partial<S3Credentials> | null,
    private readonly s3Options?: S3DriverOptions,
  ) {}

  forTarget(target: Pick<StorageTarget, 'id' | 'name' | 'kind' | 'config'> & { credentials?: StorageTarget['credentials'] }): StorageDriver {
    const fingerprint = JSON.stringify([target.name, target.kind, target.config, target.credentials ?? null]);
    const cached = this.drivers.get(target.id);
    if (cached?.fingerprint === fingerprint) return cached.driver;
    const driver = createStorageDriver(target, this.s3Credentials, this.s3Options);
    if (cached) this.retired.push(cached.driver);
    this.drivers.set(target.id, { fingerprint, driver });
    return driver;
  }

  /** A driver for a target not (yet) in the catalog, outside the cache; the caller closes it. */
  uncached(target: TargetLike): StorageDriver {
    return createStorageDriver(target, this.s3Credentials, this.s3Options);
  }

  close(): void {
    for (const { driver } of this.drivers.values()) driver.close();
    for (const driver of this.retired) driver.close();
    this.drivers.clear();
    this.retired.length = 0;
  }
}
export * from './owner-marker.ts';
