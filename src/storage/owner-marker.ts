/**
 * The owner marker: a small JSON object at `.timestore-owner` under a storage target's prefix (or
 * root) naming the catalog that owns what timestore writes there. The catalog's id comes from the
 * catalog (its `catalog_identity` row); storage only reads, writes and compares it.
 *
 * `ownershipOf` says what a prefix holds before a catalog takes it: this catalog's marker, nothing
 * at all, another catalog's marker, or objects without a marker (which no one can tie to a catalog).
 */
import { OWNER_MARKER_KEY } from '../model/object-keys.ts';
import { StorageError, type StorageDriver } from './driver.ts';

export interface OwnerMarker {
  /** The owning catalog's id. */
  catalog: string;
  /** The target's name in that catalog when the marker was written (for a human reading the bucket). */
  target: string;
  writtenAt: string;
}

export type Ownership =
  | { state: 'owned'; marker: OwnerMarker }
  | { state: 'empty' }
  | { state: 'other_catalog'; marker: OwnerMarker }
  /** Objects but no marker: `sample` is one of their keys. */
  | { state: 'unmarked_objects'; sample: string };

/** The marker under the driver's target; null when there is none. A marker that is not timestore's JSON counts as none. */
export async function readOwnerMarker(driver: StorageDriver): Promise<OwnerMarker | null> {
  let bytes: Uint8Array;
  try {
    bytes = await driver.read(driver.locationOf(OWNER_MARKER_KEY));
  } catch (err) {
    if (err instanceof StorageError && err.code === 'not_found') return null;
    throw err;
  }
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as Partial<OwnerMarker>;
    return typeof parsed.catalog === 'string' ? { catalog: parsed.catalog, target: String(parsed.target ?? ''), writtenAt: String(parsed.writtenAt ?? '') } : null;
  } catch {
    return null;
  }
}

export async function writeOwnerMarker(driver: StorageDriver, catalogId: string, targetName: string): Promise<OwnerMarker> {
  const marker: OwnerMarker = { catalog: catalogId, target: targetName, writtenAt: new Date().toISOString() };
  await driver.putBytes(OWNER_MARKER_KEY, new TextEncoder().encode(`${JSON.stringify(marker, null, 2)}\n`));
  return marker;
}

/** Who owns the driver's target, as far as catalog `catalogId` can tell. Lists at most one object. */
export async function ownershipOf(driver: StorageDriver, catalogId: string): Promise<Ownership> {
  const marker = await readOwnerMarker(driver);
  if (marker) return marker.catalog === catalogId ? { state: 'owned', marker } : { state: 'other_catalog', marker };
  for await (const object of driver.list('', { pageSize: 2 })) {
    if (object.key !== OWNER_MARKER_KEY) return { state: 'unmarked_objects', sample: object.key };
  }
  return { state: 'empty' };
}

/** What a prefix that a catalog may not take holds, in words and as details; null when it may take it. */
export function ownershipProblem(ownership: Ownership): { found: string; details: Record<string, unknown> } | null {
  switch (ownership.state) {
    case 'owned':
    case 'empty':
      return null;
    case 'other_catalog':
      return {
        found: `its owner marker names another timestore catalog (${ownership.marker.catalog}, target "${ownership.marker.target}")`,
        details: { reason: 'other_catalog', ownerCatalog: ownership.marker.catalog },
      };
    case 'unmarked_objects':
      return {
        found: `it holds objects that timestore did not write (no owner marker; e.g. "${ownership.sample}")`,
        details: { reason: 'unmarked_objects', sample: ownership.sample },
      };
  }
}
