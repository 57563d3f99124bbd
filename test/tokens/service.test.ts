/**
 * TokenService against a real catalog, with a clock the test moves: what a process keeps about a
 * token and for how long, and how often it writes the time of last use.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { Catalog } from '../../src/catalog/connection.ts';
import { AppError } from '../../src/model/errors.ts';
import { bearerToken, splitScopes, tokenProblem } from '../../src/model/api-tokens.ts';
import { hashSecret, TokenService } from '../../src/tokens/service.ts';
import { openTestCatalog, silentLog } from '../harness/catalog.ts';

let catalog: Catalog;
beforeAll(async () => {
  catalog = await openTestCatalog();
});
afterAll(() => catalog.close());

/** A service on the test catalog whose clock reads `clock.now`. */
function service(clock: { now: number }, cacheMs = 10_000) {
  return new TokenService({ sql: catalog.sql, log: silentLog, cacheMs, now: () => clock.now });
}

async function refusal(attempt: Promise<unknown>): Promise<string> {
  try {
    await attempt;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).status).toBe(401);
    return (err as AppError).message;
  }
  throw new Error('expected a 401');
}

describe('TokenService', () => {
  test('a revocation through another process is seen here once the kept answer is older than the cache time; through this one, at once', async () => {
    const clock = { now: Date.now() };
    const here = service(clock);
    const elsewhere = service(clock);
    const { token, secret } = await here.create({ name: 'cached', scopes: ['read'] }, 'test');
    expect(await here.authenticate(secret)).toEqual({ id: token.id, name: 'cached', scopes: ['read'] });

    await elsewhere.revoke(token.id, 'test');
    await expect(elsewhere.authenticate(secret)).rejects.toThrow('not valid');
    clock.now += 9_000;
    expect((await here.authenticate(secret)).name).toBe('cached'); // the kept answer: no catalog read
    clock.now += 1_000;
    expect(await refusal(here.authenticate(secret))).toContain('not valid (unknown or revoked)');

    const other = await here.create({ name: 'revoked-here', scopes: ['read'] }, 'test');
    await here.authenticate(other.secret);
    await here.revoke(other.token.id, 'test');
    await refusal(here.authenticate(other.secret));
  });

  test('with a cache time of 0 every request reads the catalog', async () => {
    const clock = { now: Date.now() };
    const here = service(clock, 0);
    const { token, secret } = await here.create({ name: 'uncached', scopes: ['read'] }, 'test');
    await here.authenticate(secret);
    await service(clock).revoke(token.id, 'test');
    await refusal(here.authenticate(secret));
  });

  test('expiry is checked on every request, kept answer or not', async () => {
    const clock = { now: Date.now() };
    const here = service(clock);
    const { secret } = await here.create({ name: 'expiring', scopes: ['read'], expiresInSeconds: 5 }, 'test');
    await here.authenticate(secret);
    clock.now += 4_999;
    await here.authenticate(secret);
    clock.now += 1;
    expect(await refusal(here.authenticate(secret))).toContain('the token expired at');
  });

  test('the time of last use is written on first use, then at most once a minute per token', async () => {
    const clock = { now: Date.now() };
    const here = service(clock, 0);
    const { token, secret } = await here.create({ name: 'touched', scopes: ['read'] }, 'test');
    const lastUsed = async () => (await catalog.sql<{ lastUsedAt: Date | null }[]>`SELECT last_used_at FROM api_tokens WHERE id = ${token.id}`)[0]?.lastUsedAt ?? null;
    expect(await lastUsed()).toBeNull();
    await here.authenticate(secret);
    expect(await lastUsed()).not.toBeNull();

    const marker = new Date('2001-01-01T00:00:00Z');
    await catalog.sql`UPDATE api_tokens SET last_used_at = ${marker} WHERE id = ${token.id}`;
    clock.now += 59_000;
    await here.authenticate(secret);
    expect(await lastUsed()).toEqual(marker);
    clock.now += 1_000;
    await here.authenticate(secret);
    expect((await lastUsed())!.getTime()).toBeGreaterThan(marker.getTime());
  });

  test('only the hash of the secret is stored', async () => {
    const { token, secret } = await service({ now: Date.now() }).create({ name: 'hashed', scopes: ['a:b'] }, 'test');
    const [row] = await catalog.sql<Record<string, unknown>[]>`SELECT * FROM api_tokens WHERE id = ${token.id}`;
    expect(row!.secretHash).toBe(hashSecret(secret));
    expect(JSON.stringify(row)).not.toContain(secret.slice(7));
  });
});

describe('token words', () => {
  test('Authorization: Bearer <ts_ secret>, nothing else', () => {
    const secret = `ts_${'a1_-'.repeat(10)}abc`;
    expect(bearerToken(`Bearer ${secret}`)).toEqual({ secret });
    expect(bearerToken(`BEARER  ${secret} `)).toEqual({ secret });
    expect(bearerToken(undefined)).toEqual({ problem: 'missing' });
    for (const value of [secret, `Basic ${secret}`, `Bearer ${secret}x`, `Bearer ${secret.replace('ts_', 'tk_')}`, `Bearer ${secret} extra`]) {
      expect(bearerToken(value), value).toEqual({ problem: 'malformed' });
    }
  });

  test('scopes split like x-iam-scopes; names and scopes are checked', () => {
    expect(splitScopes(' read, write:weather  read ')).toEqual(['read', 'write:weather']);
    expect(tokenProblem('ci@deploy:eu-1', ['read'])).toBeNull();
    expect(tokenProblem('-x', ['read'])).toContain('token name');
    expect(tokenProblem('x', [])).toContain('at least one scope');
    expect(tokenProblem('x', ['a b'])).toContain('without whitespace or commas');
    expect(tokenProblem('x', Array.from({ length: 51 }, (_, i) => `s${i}`))).toContain('at most 50');
  });
});
