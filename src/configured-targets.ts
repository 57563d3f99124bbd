/**
 * The storage targets the configuration describes, registered at every boot: `local` (partitions
 * under the storage root) always, and `s3` when the driver is s3 or any S3 endpoint, region or key
 * is set. Credentials stay in the environment, never in the catalog.
 *
 * Each is taken only when this catalog owns its prefix (storage/owner-marker.ts): empty (the
 * marker is written), holding this catalog's marker, registered before markers existed (its
 * objects are this catalog's: the marker is written), or with TIMESTORE_STORAGE_ADOPT_EXISTING.
 * Anything else refuses the boot (`storage_target_not_owned`).
 *
 * The `local` target is one directory on one machine. A process whose own directory is not the one
 * the catalog marked (another machine, or another TIMESTORE_STORAGE_ROOT) would strand the jobs it
 * stages and rewrite the target under the others: with the local driver it is refused at boot
 * (`local_target_elsewhere`, saying to use S3); with the s3 driver it leaves the target alone.
 */
import { join } from 'node:path';
import type { Sql } from 'postgres';
import { catalogId } from './catalog/identity.ts';
import { findStorageTarget, listStorageTargets, markStorageTargetOwned, type StorageTargetInput, upsertStorageTarget } from './catalog/storage-targets.ts';
import type { Config } from './config.ts';
import type { Logger } from './log.ts';
import { errors } from './model/errors.ts';
import type { StorageTarget } from './model/records.ts';
import { ownershipOf, ownershipProblem, type StorageDrivers, writeOwnerMarker } from './storage/index.ts';

const ADOPT_AT_BOOT = 'start once with TIMESTORE_STORAGE_ADOPT_EXISTING=true (and unset it afterwards)';

export async function registerConfiguredTargets(sql: Sql, config: Config, drivers: StorageDrivers, log: Logger): Promise<void> {
  const owner = await catalogId(sql);
  const configured: StorageTargetInput[] = [
    { name: 'local', kind: 'local', description: 'Local disk under TIMESTORE_STORAGE_ROOT', config: { root: join(config.storageRoot, 'partitions') } },
  ];
  const { s3 } = config;
  if (config.storageDriver === 's3' || s3.endpoint || s3.region || s3.accessKeyId) {
    configured.push({
      name: 's3',
      kind: 's3',
      description: 'S3 bucket from TIMESTORE_S3_*',
      config: { bucket: s3.bucket, prefix: '', endpoint: s3.endpoint, region: s3.region, forcePathStyle: s3.forcePathStyle },
    });
  }
  const targets = [];
  for (const input of configured) {
    const target = await takeConfiguredTarget(sql, config, drivers, owner, input, log);
    if (target) targets.push({ name: target.name, id: target.id, kind: target.kind });
  }
  await markEarlierTargets(sql, drivers, owner, log);
  log.info({ targets, default: config.storageDriver, catalog: owner }, 'storage targets registered');
}

/** Registers (or updates) one configured target once its prefix is this catalog's; null when the process leaves it alone. */
async function takeConfiguredTarget(
  sql: Sql,
  config: Config,
  drivers: StorageDrivers,
  owner: string,
  input: StorageTargetInput,
  log: Logger,
): Promise<StorageTarget | null> {
  const before = await findStorageTarget(sql, input.name);
  const driver = drivers.uncached(input);
  try {
    const ownership = await ownershipOf(driver, owner);
    const samePlace = before !== null && before.kind === input.kind && canonical(before.config) === canonical(input.config);
    const markedElsewhere = before !== null && before.ownerMarkedAt !== null && ownership.state !== 'owned';
    if (input.kind === 'local' && markedElsewhere && ownership.state !== 'other_catalog' && !config.storageAdoptExisting) {
      const registered = (before.config as { root?: string }).root ?? '(unknown)';
      const mine = (input.config as { root: string }).root;
      const why = samePlace
        ? "the directory holds no owner marker of this catalog: it is another machine's directory of the same path, or it was emptied"
        : 'it is another directory';
      if (config.storageDriver === 'local') throw errors.local_target_elsewhere(registered, mine, why);
      log.warn({ registered, mine, why }, 'storage: the "local" target is another process\'s directory; this process (driver s3) leaves it alone');
      return null;
    }
    const legacy = before !== null && before.ownerMarkedAt === null && samePlace && ownership.state === 'unmarked_objects';
    const problem = ownershipProblem(ownership);
    if (problem && !legacy && !config.storageAdoptExisting) {
      throw errors.storage_target_not_owned(input.name, problem.found, problem.details, ADOPT_AT_BOOT);
    }
    if (ownership.state !== 'owned') {
      await writeOwnerMarker(driver, owner, input.name);
      if (problem) log.warn({ target: input.name, ...problem.details, registeredBeforeMarkers: legacy }, `storage: target "${input.name}" taken as this catalog's (${problem.found})`);
    }
  } finally {
    driver.close();
  }
  const target = await upsertStorageTarget(sql, input);
  return target.ownerMarkedAt ? target : markStorageTargetOwned(sql, target.id);
}

/**
 * Targets registered before owner markers existed (ownerMarkedAt null) were this catalog's: each
 * gets its marker now, unless another catalog's is there. A target that cannot be reached is left
 * for the next boot (the sweep skips it until then).
 */
async function markEarlierTargets(sql: Sql, drivers: StorageDrivers, owner: string, log: Logger): Promise<void> {
  for (const target of await listStorageTargets(sql)) {
    if (target.ownerMarkedAt !== null) continue;
    try {
      const driver = drivers.forTarget(target);
      const ownership = await ownershipOf(driver, owner);
      if (ownership.state === 'other_catalog') {
        log.warn({ target: target.name, ownerCatalog: ownership.marker.catalog }, 'storage: the target holds another catalog\'s owner marker; the sweep leaves it alone');
        continue;
      }
      if (ownership.state !== 'owned') await writeOwnerMarker(driver, owner, target.name);
      await markStorageTargetOwned(sql, target.id);
      log.info({ target: target.name }, 'storage: owner marker written under a target registered before markers existed');
    } catch (err) {
      log.warn({ err, target: target.name }, 'storage: could not write the owner marker of a target registered before markers existed; the sweep skips it until then');
    }
  }
}

/** JSON with sorted keys and without null members: jsonb keeps its own key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).filter(([, x]) => x !== null && x !== undefined).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
