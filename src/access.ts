/** Looks up the access rules of the dataset a request touches, for the scope checks in src/http/auth.ts. */
import type { Sql } from 'postgres';
import { findDataset } from './catalog/datasets.ts';
import { getJob, type Job } from './catalog/job-table.ts';
import { type Dataset, type DatasetIam, datasetRowText } from './model/records.ts';

export interface DatasetRef {
  datasetSlug?: string;
  datasetId?: string;
  jobId?: string;
}

/** A dataset's own scopes, and its slug (for the per-dataset scopes `read:<slug>` and `write:<slug>`). */
export interface DatasetAccess extends DatasetIam {
  slug?: string;
  /** The dataset's row as the check read it, which the request's handler uses instead of reading it again. */
  dataset?: Dataset;
}

export interface DatasetAccessReader {
  /** The access rules of the dataset `ref` names, read from the catalog now; null when there is no such dataset. */
  read(ref: DatasetRef): Promise<DatasetAccess | null>;
  /**
   * What the last `read` of the same slug or id found, while it looks likely to be current: that
   * read found the same row as the one before it, and no batch this process wrote has been
   * published to the dataset since. A row that changes between reads (a dataset written to all the
   * time) is not offered, so that work done on it is seldom thrown away; other changes (another
   * process's writes, compaction) are found by the read that confirms the row.
   */
  recent(ref: DatasetRef): DatasetAccess | null;
  /**
   * What the last `read` of the same slug or id found, however often the row has changed since:
   * for a caller that confirms the parts it relies on where it writes (an ingest's job INSERT).
   */
  remembered(ref: DatasetRef): DatasetAccess | null;
  /** This process has just changed the dataset (published a version): its recent row is outdated. */
  changed(datasetId: string): void;
}

/** How many datasets' last reads are remembered for `recent` (the oldest is forgotten first). */
const RECENT_DATASETS = 1_000;

/** `jobBeforeItsRow`: a job acknowledged before its row exists (src/ingest/logged-jobs.ts), by id. */
export function datasetAccessReader(sql: Sql, jobBeforeItsRow: (id: string) => Job | null = () => null): DatasetAccessReader {
  // `text`: the row as datasetRowText gives it, kept so that each read serializes only its own row.
  const recent = new Map<string, { access: DatasetAccess; text: string; stable: boolean }>();
  const remember = (key: string, access: DatasetAccess | null): void => {
    const previous = recent.get(key);
    recent.delete(key);
    if (!access?.dataset) return;
    const text = datasetRowText(access.dataset);
    recent.set(key, { access, text, stable: previous?.text === text });
    if (recent.size > RECENT_DATASETS) recent.delete(recent.keys().next().value as string);
  };
  const lastRead = (ref: DatasetRef) => {
    const idOrSlug = ref.jobId ? undefined : (ref.datasetSlug ?? ref.datasetId);
    return idOrSlug ? recent.get(idOrSlug) : undefined;
  };
  return {
    async read(ref) {
      const idOrSlug = ref.jobId ? (jobBeforeItsRow(ref.jobId) ?? (await getJob(sql, ref.jobId)))?.datasetId : (ref.datasetSlug ?? ref.datasetId);
      if (!idOrSlug) return null;
      const dataset = await findDataset(sql, idOrSlug);
      const access = dataset ? { ...dataset.metadata.iam, slug: dataset.slug, dataset } : null;
      if (!ref.jobId) remember(idOrSlug, access);
      return access;
    },
    recent(ref) {
      const entry = lastRead(ref);
      return entry?.stable ? entry.access : null;
    },
    remembered(ref) {
      return lastRead(ref)?.access ?? null;
    },
    changed(datasetId) {
      for (const entry of recent.values()) if (entry.access.dataset?.id === datasetId) entry.stable = false;
    },
  };
}
