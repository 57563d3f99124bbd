/**
 * The effective retention policy of a dataset: its own rules over the server defaults, rule by rule.
 * A rule the dataset sets to null means "no limit" and overrides a server default; a rule it leaves
 * out inherits the default.
 */
import type { RetentionPolicy } from './records.ts';

/** The server-wide retention policy (TIMESTORE_RETENTION_*); a dataset's own policy overrides it rule by rule. Null: no limit. */
export interface RetentionDefaults {
  maxAgeHours: number | null;
  maxTotalBytes: number | null;
  deleteGraceMinutes: number;
}
export type RuleSource = 'dataset' | 'server' | 'none';

export interface EffectiveRetention {
  maxAgeHours: { value: number | null; source: RuleSource };
  maxTotalBytes: { value: number | null; source: RuleSource };
  deleteGraceMinutes: { value: number; source: Exclude<RuleSource, 'none'> };
}

export function effectiveRetention(stored: RetentionPolicy | null, defaults: RetentionDefaults): EffectiveRetention {
  const rule = (own: number | null | undefined, fallback: number | null): { value: number | null; source: RuleSource } => {
    if (own !== undefined) return { value: own, source: 'dataset' };
    return fallback === null ? { value: null, source: 'none' } : { value: fallback, source: 'server' };
  };
  const grace = stored?.deleteGraceMinutes;
  return {
    maxAgeHours: rule(stored?.rules.maxAgeHours, defaults.maxAgeHours),
    maxTotalBytes: rule(stored?.rules.maxTotalBytes, defaults.maxTotalBytes),
    deleteGraceMinutes: grace === undefined ? { value: defaults.deleteGraceMinutes, source: 'server' } : { value: grace, source: 'dataset' },
  };
}
