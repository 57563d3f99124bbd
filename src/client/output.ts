/** Printing an answer's rows: an aligned table (the default), CSV (RFC 4180) or JSON. */

export const OUTPUT_FORMATS = ['table', 'csv', 'json'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export interface Rows {
  columns: string[];
  rows: Record<string, unknown>[];
  truncated?: boolean;
}

export function render(answer: Rows, format: OutputFormat): string {
  if (format === 'json') return `${JSON.stringify(answer.rows)}\n`;
  const cells = answer.rows.map((row) => answer.columns.map((c) => text(row[c])));
  if (format === 'csv') return [answer.columns, ...cells].map((line) => line.map(csvField).join(',')).join('\n') + '\n';
  const widths = answer.columns.map((c, i) => Math.max(c.length, ...cells.map((line) => line[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [line(answer.columns), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
  out.push(`(${answer.rows.length} row${answer.rows.length === 1 ? '' : 's'}${answer.truncated ? ', truncated' : ''})`);
  return `${out.join('\n')}\n`;
}

function text(value: unknown): string {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}
