/** Which write failures are the data's (split the batches, fail the one at fault) and which the moment's (retry all). */
import { describe, expect, test } from 'bun:test';
import { CommitOutcomeUnknownError } from '../../src/catalog/transaction.ts';
import { isDataFailure } from '../../src/ingest/write-failures.ts';
import { StorageError } from '../../src/storage/driver.ts';

const storage = (code: 'not_found' | 'invalid_key' | 'foreign_location' | 'failed', detail = 'x') =>
  new StorageError('put', 'local', 'file:///x', code, detail);
const pg = (code: string) => Object.assign(new Error(`pg ${code}`), { name: 'PostgresError', code, severity: 'ERROR' });

describe('isDataFailure', () => {
  test('reading a staged body: gone or unaddressable is the data; an unreachable target is not', () => {
    expect(isDataFailure('read', storage('not_found'))).toBe(true);
    expect(isDataFailure('read', storage('foreign_location'))).toBe(true);
    expect(isDataFailure('read', storage('failed', 'ECONNREFUSED'))).toBe(false);
    expect(isDataFailure('read', new Error('catalog down'))).toBe(false);
  });

  test('DuckDB: conversion and parse errors are the data; memory, disk and file handles are not', () => {
    expect(isDataFailure('write', new Error('Conversion Error: Could not convert string "x" to TIMESTAMP WITH TIME ZONE'))).toBe(true);
    expect(isDataFailure('write', new Error('Invalid Input Error: Malformed JSON in file'))).toBe(true);
    expect(isDataFailure('write', new Error('Out of Memory Error: could not allocate block'))).toBe(false);
    expect(isDataFailure('write', new Error('IO Error: No space left on device'))).toBe(false);
    expect(isDataFailure('write', new Error('Too many open files'))).toBe(false);
    expect(isDataFailure('write', new Error('Terminating worker thread'))).toBe(false);
  });

  test('storing: a key the target refuses is the data; anything else is not', () => {
    expect(isDataFailure('store', storage('invalid_key'))).toBe(true);
    expect(isDataFailure('store', storage('failed', 'ENAMETOOLONG: name too long'))).toBe(true);
    expect(isDataFailure('store', storage('failed', 'KeyTooLongError, HTTP 400'))).toBe(true);
    expect(isDataFailure('store', storage('failed', 'ENOSPC: no space left on device'))).toBe(false);
    expect(isDataFailure('store', storage('failed', 'HTTP 503'))).toBe(false);
  });

  test('publishing: data exceptions, constraints and limits are the data; connections, deadlocks and lost commits are not', () => {
    for (const code of ['22008', '22P02', '23505', '54000']) expect(isDataFailure('publish', pg(code))).toBe(true);
    for (const code of ['40P01', '40001', '57P01', '08006', '53100', 'XX000']) expect(isDataFailure('publish', pg(code))).toBe(false);
    expect(isDataFailure('publish', Object.assign(new Error('closed'), { code: 'CONNECTION_CLOSED' }))).toBe(false);
    expect(isDataFailure('publish', new CommitOutcomeUnknownError('unknown'))).toBe(false);
  });
});
