/** Looks up the IAM rules of the dataset a request touches, for the scope checks in src/http/auth.ts. */
import type { Sql } from 'postgres';
import { findDataset } from './catalog/datasets.ts';
import { getJob } from './catalog/job-table.ts';
import type { DatasetIam } from './model/records.ts';

export interface DatasetRef {
  datasetSlug?: string;
  datasetId?: string;
  jobId?: string;
}

export function datasetIamResolver(sql: Sql) {
  return async (ref: DatasetRef): Promise<DatasetIam | null> => {
    const idOrSlug = ref.jobId ? (await getJob(sql, ref.jobId))?.datasetId : (ref.datasetSlug ?? ref.datasetId);
    if (!idOrSlug) return null;
    return (await findDataset(sql, idOrSlug))?.metadata.iam ?? null;
  };
}
