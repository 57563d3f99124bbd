/**
 * Helpers for building DuckDB SQL text. Values go in as bound parameters wherever DuckDB accepts
 * one; these cover what cannot be bound: identifiers, and literals that must be constants
 * (type names inside a table function's `columns` struct).
 */

/** A column or field name timestore accepts: a letter or `_`, then up to 62 letters, digits or `_`. */
export const IDENTIFIER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Throws unless `name` matches {@link IDENTIFIER_PATTERN}; `what` names it in the message. */
export function assertIdentifier(name: unknown, what: string): asserts name is string {
  if (typeof name !== 'string' || !IDENTIFIER_PATTERN.test(name)) {
    throw new Error(`${what} ${JSON.stringify(name)} is not a valid identifier (${IDENTIFIER_PATTERN.source})`);
  }
}

/** A double-quoted SQL identifier (embedded `"` doubled). */
export function quoteIdent(name: string): string {
  if (name.includes('\0')) throw new Error('an SQL identifier cannot contain a NUL character');
  return `"${name.replaceAll('"', '""')}"`;
}

/** A single-quoted SQL string literal (embedded `'` doubled); for constants that cannot be bound. */
export function sqlString(value: string): string {
  if (value.includes('\0')) throw new Error('an SQL string literal cannot contain a NUL character');
  return `'${value.replaceAll("'", "''")}'`;
}
