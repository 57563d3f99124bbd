import { describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLIENT_CONFIG_VARIABLES, CONFIG_VARIABLES, ConfigError, describeConfig, loadClientConfig, loadConfig } from '../src/config.ts';

describe('configuration', () => {
  test('defaults: embedded catalog, local storage under ./data, port 4100', () => {
    const config = loadConfig({}, '/srv/app');
    expect(config.host).toBe('127.0.0.1');
    expect(config.port).toBe(4100);
    expect(config.databaseUrl).toBeNull();
    expect(config.pgSchema).toBe('timestore');
    expect(config.storageDriver).toBe('local');
    expect(config.storageRoot).toBe('/srv/app/data/timestore');
    expect(config.queryCache).toEqual({ enabled: true, dir: '/srv/app/data/timestore/cache', maxBytes: 5368709120 });
    expect(config.ingest).toEqual({
      queueName: 'timestore_ingest_queue',
      concurrency: 2,
      mode: 'queued',
      maxBodyBytes: 64 * 1024 ** 2,
      idempotencyTtlSeconds: 24 * 3600,
      coalesceRows: 250_000,
      coalesceWaitMs: 450,
      coalesceMaxBytes: 256 * 1024 ** 2,
      maxBatchRows: 1_000_000,
      maxFields: 1024,
    });
    expect(config.query).toMatchObject({ queueMax: 64, streamQueueMax: 16, maxPartitions: 10_000, maxBytes: 10 * 1024 ** 3 });
    expect(config.duckdbMaxSpillBytes).toBe(8 * 1024 ** 3);
    expect(config.scopes).toEqual({ read: null, admin: null, write: null });
  });

  test('TIMESTORE_DATABASE_URL wins over DATABASE_URL, which is the fallback', () => {
    expect(loadConfig({ DATABASE_URL: 'postgres://a@h/db' }).databaseUrl).toBe('postgres://a@h/db');
    expect(loadConfig({ DATABASE_URL: 'postgres://a@h/db', TIMESTORE_DATABASE_URL: 'postgresql://b@h/x' }).databaseUrl).toBe(
      'postgresql://b@h/x',
    );
  });

  test('the admin scope falls back to the read scope', () => {
    expect(loadConfig({ TIMESTORE_REQUIRE_SCOPE: 'ts:read' }).scopes).toEqual({ read: 'ts:read', admin: 'ts:read', write: null });
    expect(loadConfig({ TIMESTORE_REQUIRE_SCOPE: 'r', TIMESTORE_ADMIN_SCOPE: 'a' }).scopes.admin).toBe('a');
  });

  test('TIMESTORE_AUTH: headers by default; tokens gives every rule a scope (read, write, admin unless named)', () => {
    expect(loadConfig({}).auth).toEqual({ mode: 'headers', tokenCacheMs: 10_000 });
    const tokens = loadConfig({ TIMESTORE_AUTH: 'tokens', TIMESTORE_AUTH_TOKEN_CACHE_SECONDS: '0' });
    expect(tokens.auth).toEqual({ mode: 'tokens', tokenCacheMs: 0 });
    expect(tokens.scopes).toEqual({ read: 'read', write: 'write', admin: 'admin' });
    // With tokens the admin scope never falls back to the read scope.
    expect(loadConfig({ TIMESTORE_AUTH: 'tokens', TIMESTORE_REQUIRE_SCOPE: 'ts:read' }).scopes).toEqual({ read: 'ts:read', write: 'write', admin: 'admin' });
    expect(loadConfig({ TIMESTORE_AUTH: 'none' }).scopes).toEqual({ read: null, admin: null, write: null });
  });

  test.each([
    ['TIMESTORE_PORT', 'abc', 'TIMESTORE_PORT must be an integer from 1 to 65535 (got "abc")'],
    ['TIMESTORE_PORT', '70000', 'TIMESTORE_PORT must be an integer from 1 to 65535'],
    ['TIMESTORE_STORAGE_DRIVER', 'gcs', 'TIMESTORE_STORAGE_DRIVER must be one of local, s3 (got "gcs")'],
    ['TIMESTORE_S3_FORCE_PATH_STYLE', 'maybe', 'TIMESTORE_S3_FORCE_PATH_STYLE must be true or false'],
    ['TIMESTORE_QUERY_CACHE_ENABLED', 'sometimes', 'TIMESTORE_QUERY_CACHE_ENABLED must be true or false'],
    ['TIMESTORE_QUERY_CACHE_MAX_BYTES', '-1', 'TIMESTORE_QUERY_CACHE_MAX_BYTES must be an integer'],
    ['TIMESTORE_LOG_LEVEL', 'loud', 'TIMESTORE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent'],
    ['TIMESTORE_INGEST_CONCURRENCY', '0', 'TIMESTORE_INGEST_CONCURRENCY must be an integer from 1 to 256'],
    ['TIMESTORE_INGEST_COALESCE_ROWS', '2000000', 'TIMESTORE_INGEST_COALESCE_ROWS must be an integer from 1 to 1000000'],
    ['TIMESTORE_INGEST_COALESCE_WAIT_MS', '-1', 'TIMESTORE_INGEST_COALESCE_WAIT_MS must be an integer from 0 to 60000'],
    ['TIMESTORE_PG_SCHEMA', 'Bad-Schema', 'TIMESTORE_PG_SCHEMA must be a lower-case SQL identifier'],
    ['TIMESTORE_DATABASE_URL', 'mysql://x', 'TIMESTORE_DATABASE_URL must be a URL starting with postgres:// or postgresql://'],
    ['TIMESTORE_S3_ENDPOINT', 'not a url', 'TIMESTORE_S3_ENDPOINT must be a URL'],
    ['TIMESTORE_WORKER_THREADS', '1.5', 'TIMESTORE_WORKER_THREADS must be an integer'],
    ['TIMESTORE_AUTH', 'jwt', 'TIMESTORE_AUTH must be one of headers, tokens, none (got "jwt")'],
    ['TIMESTORE_AUTH_TOKEN_CACHE_SECONDS', '301', 'TIMESTORE_AUTH_TOKEN_CACHE_SECONDS must be an integer from 0 to 300'],
  ])('%s=%s is refused with a message naming the variable', (name, value, message) => {
    let error: unknown;
    try {
      loadConfig({ [name]: value });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain(message);
  });

  test('tracing: the OTLP span endpoint, its headers and service name', () => {
    expect(loadConfig({}).tracing).toEqual({ tracesEndpoint: null, headers: {}, serviceName: 'timestore' });
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing.tracesEndpoint).toBe('http://collector:4318/v1/traces');
    expect(
      loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp' }).tracing.tracesEndpoint,
    ).toBe('https://traces.example/otlp');
    const config = loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: 'api-key=a%2Cb, x-tenant = t1', OTEL_SERVICE_NAME: 'ts-eu' });
    expect(config.tracing.headers).toEqual({ 'api-key': 'a,b', 'x-tenant': 't1' });
    expect(config.tracing.serviceName).toBe('ts-eu');
    expect(describeConfig(config).tracing).toEqual({ tracesEndpoint: null, headers: { 'api-key': '***', 'x-tenant': '***' }, serviceName: 'ts-eu' });
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_HEADERS: 'novalue' })).toThrow('OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs');
    expect(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://collector:4317' })).toThrow('OTEL_EXPORTER_OTLP_ENDPOINT must be a URL');
  });

  test('every problem is reported at once', () => {
    expect(() => loadConfig({ TIMESTORE_PORT: 'x', TIMESTORE_LOG_LEVEL: 'y' })).toThrow(/TIMESTORE_PORT[\s\S]*TIMESTORE_LOG_LEVEL/);
  });

  test('the README documents every variable, and only those', () => {
    const readme = readFileSync(join(import.meta.dir, '../README.md'), 'utf8');
    const documented = [...readme.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...CONFIG_VARIABLES, ...CLIENT_CONFIG_VARIABLES].map((v) => v.name).sort());
  });

  test('the client commands read TIMESTORE_URL and TIMESTORE_TOKEN, and refuse a URL that is not http(s)', () => {
    expect(loadClientConfig({})).toEqual({ url: null, token: null });
    expect(loadClientConfig({ TIMESTORE_URL: 'http://127.0.0.1:4100', TIMESTORE_TOKEN: 'ts_x' })).toEqual({ url: 'http://127.0.0.1:4100', token: 'ts_x' });
    expect(() => loadClientConfig({ TIMESTORE_URL: '127.0.0.1:4100' })).toThrow('TIMESTORE_URL must be an http:// or https:// URL (got "127.0.0.1:4100")');
  });
});
