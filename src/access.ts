/** Looks up the access rules of the dataset a request touches, for the scope checks in src/http/auth.ts. */
import type { Sql } from 'postgres';
import { findDataset } from './catalog/datasets.ts';
import { getJob } from './catalog/job-table.ts';
import type { Dataset, DatasetIam } from './model/records.ts';

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

export function datasetIamResolver(sql: Sql) {
  return async (ref: DatasetRef): Promise<DatasetAccess | null> => {
    const idOrSlug = ref.jobId ? (await getJob(sql, ref.jobId))?.datasetId : (ref.datasetSlug ?? ref.datasetId);
    if (!idOrSlug) return null;
    const dataset = await findDataset(sql, idOrSlug);
    return dataset ? { ...dataset.metadata.iam, slug: dataset.slug, dataset } : null;
  };
}
