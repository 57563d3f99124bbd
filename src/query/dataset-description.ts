/** A dataset as its readers see it (GET /datasets, GET /datasets/:slug): what a dashboard needs to ask it questions. */
import type { DatasetExtent } from '../catalog/dataset-extents.ts';
import type { Dataset, SchemaField } from '../model/records.ts';
import { seriesKey } from '../model/series.ts';
import { isoFromMicrosTrimmed } from '../model/timestamps.ts';

export interface DatasetDescription {
  slug: string;
  name: string;
  description: string | null;
  /** `active` or `inactive` (refuses ingest, answers queries); archived datasets are not shown. */
  status: string;
  timestampColumn: string;
  /** The columns that tell series apart (model/series.ts): its sortColumns, else its string fields. */
  seriesKey: string[];
  /** The current schema version's fields; null before the first batch. */
  schema: { version: number; fields: SchemaField[] } | null;
  /** The timestamps of the earliest and latest row; null without rows. */
  timeRange: { earliest: string; latest: string } | null;
  rowCount: number;
  partitionCount: number;
  manifestVersion: number;
}

export function describeDataset(dataset: Dataset, fields: SchemaField[] | null, extent: DatasetExtent | undefined): DatasetDescription {
  const earliest = extent?.earliestMicros ?? null;
  const latest = extent?.latestMicros ?? null;
  return {
    slug: dataset.slug,
    name: dataset.name,
    description: dataset.description,
    status: dataset.status,
    timestampColumn: dataset.timestampColumn,
    seriesKey: fields ? seriesKey(dataset, fields) : [],
    schema: fields ? { version: dataset.schemaVersion, fields } : null,
    timeRange: earliest !== null && latest !== null ? { earliest: isoFromMicrosTrimmed(earliest), latest: isoFromMicrosTrimmed(latest) } : null,
    rowCount: extent?.rowCount ?? 0,
    partitionCount: extent?.partitionCount ?? 0,
    manifestVersion: extent?.manifestVersion ?? dataset.manifestVersion,
  };
}
