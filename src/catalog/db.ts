import type { Sql, TransactionSql } from 'postgres';

/** A catalog handle: the pool, or a transaction begun on it. Repositories accept either. */
export type Db = Sql | TransactionSql;
