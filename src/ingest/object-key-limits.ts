/**
 * The lengths of a batch's object keys (model/object-keys.ts) are checked before it is acknowledged
 * (`checkObjectKeys`): the storage driver refuses a key its file system or S3 would refuse, and that
 * refusal must come before the 202.
 */
import { refuse } from '../model/constraints.ts';
import { partitionObjectKey, stagingLogKey, type StagedExtension } from '../model/object-keys.ts';
import { StorageError, type StorageDriver } from '../storage/index.ts';

/** Every window start of a storable time (years 0000–9999, as window starts may precede year 1) has this length. */
const SAMPLE_WINDOW_START = '2000-01-01T00:00:00.000000Z';

/**
 * Refuses (400 `object_key_too_long`) a batch whose staged body or partition files would get a key
 * the target cannot store: the longest such keys are tried on the driver, which knows its limits.
 */
export function checkObjectKeys(driver: StorageDriver, slug: string, partitionKey: Record<string, string>, extension: StagedExtension): void {
  const keys = [
    ['partition file', partitionObjectKey(slug, partitionKey, SAMPLE_WINDOW_START)],
    // A staging log's key is the longer of a staged body's two (its own object's, or its log's).
    ['staged batch', stagingLogKey(slug, extension)],
  ] as const;
  for (const [what, key] of keys) {
    try {
      driver.locationOf(key);
    } catch (err) {
      if (!(err instanceof StorageError) || err.code !== 'invalid_key') throw err;
      throw refuse(
        'object_key_length',
        `the ${what} of this batch would be stored under a key that storage target "${driver.name}" cannot take: ${err.detail}; ` +
          'use shorter partition key names and values (or a shorter dataset slug)',
        { key, bytes: Buffer.byteLength(key), storageTarget: driver.name, partitionKey },
      );
    }
  }
}
