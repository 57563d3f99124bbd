/**
 * Swagger UI at GET /docs renders in a real browser with no network beyond
 * loopback: the server itself serves swagger-ui-dist (src/http/docs.ts), and
 * headless Chromium (test/harness/chromium.ts) has every other host blocked.
 * Without Chromium the browser tests are skipped locally and fail in CI.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { TokenService } from '../../src/tokens/service.ts';
import { silentLog } from '../harness/catalog.ts';
import { chromiumPath, renderPage } from '../harness/chromium.ts';
import { type ServerProcess, spawnServer } from '../harness/server-process.ts';
import { startTestServer } from '../harness/server.ts';

const HAVE_CHROMIUM = chromiumPath() !== null;
// Skipped without Chromium locally; in CI it runs (and fails, below) so a missing browser is not silent.
const browserTest = test.skipIf(!HAVE_CHROMIUM && !process.env.CI);

/** Swagger UI has rendered the operations it read from /openapi.json. */
const SWAGGER_RENDERED =
  "document.querySelector('.swagger-ui .info .title') && document.querySelectorAll('.opblock').length >= 2";

/** The browser asks for /favicon.ico on its own; the server has none (a 404 that says nothing about Swagger UI). */
// Chromium asks for /favicon.ico before it reads the page's <link rel="icon">.
const withoutFavicon = (lines: string[]) => lines.filter((line) => !line.includes('/favicon.ico'));

let server: ServerProcess;

beforeAll(async () => {
  server = await spawnServer();
}, 90_000);

afterAll(async () => {
  await server?.stop();
});

describe('GET /docs without a browser', () => {
  test('the page references only this server', async () => {
    const res = await fetch(`${server.url}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toStartWith('text/html');
    const html = await res.text();
    const refs = [...html.matchAll(/\b(?:src|href)\s*=\s*["']([^"']*)["']/gi)].map((m) => m[1] as string);
    expect(refs.map((r) => r.replace(/\?v=[\d.]+$/, ''))).toEqual([
      '/docs/assets/favicon-32x32.png',
      '/docs/assets/swagger-ui.css',
      '/docs/assets/swagger-ui-bundle.js',
    ]);
    // No absolute or protocol-relative URL anywhere (attributes, inline script, CSS).
    expect(html).not.toMatch(/(?:[a-z][a-z0-9+.-]*:)?\/\/[a-z0-9.-]+/i);
    expect(html).toContain("url: '/openapi.json'");
  });

  test.each([
    ['GET', '/docs/'],
    ['HEAD', '/docs'],
  ])('%s %s is the same offline page, never the plugin\'s CDN page', async (method, path) => {
    const res = await fetch(`${server.url}${path}`, { method });
    expect(res.status).toBe(200);
    if (method === 'GET') expect(await res.text()).not.toContain('unpkg');
    else expect(res.headers.get('content-type')).toStartWith('text/html');
  });

  test.each([
    ['swagger-ui-bundle.js', 'text/javascript', 'SwaggerUIBundle'],
    ['swagger-ui.css', 'text/css', '.swagger-ui'],
  ])('/docs/assets/%s is served', async (file, type, marker) => {
    const res = await fetch(`${server.url}/docs/assets/${file}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toStartWith(type);
    const body = await res.text();
    expect(body.length).toBeGreaterThan(100_000);
    expect(body).toContain(marker);
  });

  test('an unknown asset is a JSON 404', async () => {
    const res = await fetch(`${server.url}/docs/assets/nope.js`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error.code).toBe('not_found');
  });

  test('/openapi.json describes the health routes', async () => {
    const res = await fetch(`${server.url}/openapi.json`);
    expect(res.status).toBe(200);
    const spec = (await res.json()) as { info: { title: string }; paths: Record<string, unknown> };
    expect(spec.info.title).toBe('timestore');
    expect(Object.keys(spec.paths)).toEqual(expect.arrayContaining(['/health', '/ready']));
  });
});

describe('Swagger UI in headless Chromium', () => {
  beforeAll(() => {
    if (!HAVE_CHROMIUM && process.env.CI) {
      throw new Error(
        'CI is set but chromium is not installed: the Swagger UI browser test needs Debian\'s "chromium" ' +
          '(apt-get install -y chromium; .ci/run installs it)',
      );
    }
  });

  browserTest(
    'the harness blocks every host but loopback',
    async () => {
      // A page that needs two external scripts, by name and by IP address; both must fail.
      const page = `<!DOCTYPE html><html><body>
        <p id="by-name">pending</p><p id="by-ip">pending</p><p id="local">pending</p>
        <script>
          window.mark = (id, text) => { document.getElementById(id).textContent = text; };
        </script>
        <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
          onload="mark('by-name', 'loaded')" onerror="mark('by-name', 'blocked')"></script>
        <script src="http://93.184.215.14/x.js"
          onload="mark('by-ip', 'loaded')" onerror="mark('by-ip', 'blocked')"></script>
        <script src="/local.js" onerror="mark('local', 'error')"></script>
      </body></html>`;
      const site = Bun.serve({
        hostname: '127.0.0.1',
        port: 0,
        fetch: (req) =>
          new URL(req.url).pathname === '/local.js'
            ? new Response("mark('local', 'loaded')", { headers: { 'content-type': 'text/javascript' } })
            : new Response(page, { headers: { 'content-type': 'text/html' } }),
      });
      try {
        const result = await renderPage(`http://127.0.0.1:${site.port}/`, {
          waitFor: "[...document.querySelectorAll('p')].every((p) => p.textContent !== 'pending')",
        });
        expect(result.dom).toContain('<p id="by-name">blocked</p>');
        expect(result.dom).toContain('<p id="by-ip">blocked</p>');
        expect(result.dom).toContain('<p id="local">loaded</p>');
        expect(result.externalRequests).toEqual([
          'https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js',
          'http://93.184.215.14/x.js',
        ]);
        // They reached the black-hole proxy rather than the network.
        expect(result.proxyLog).toEqual(
          expect.arrayContaining(['CONNECT cdn.jsdelivr.net:443', 'GET http://93.184.215.14/x.js']),
        );
      } finally {
        site.stop(true);
      }
    },
    45_000,
  );

  browserTest(
    'renders the API from /openapi.json using only this server',
    async () => {
      const result = await renderPage(`${server.url}/docs`, { waitFor: SWAGGER_RENDERED, timeoutMs: 20_000 });
      const { dom } = result;
      expect(dom).toMatch(/<h1 class="title">timestore\b/);
      expect(dom).toMatch(/class="opblock opblock-get"/);
      expect(dom).toContain('data-path="/health"');
      expect(dom).toContain('data-path="/ready"');
      expect(dom).toContain('<span>/health</span>');
      expect(dom).toContain('<span>/ready</span>');
      const path = (u: string) => new URL(u).pathname;
      expect(result.requests.map(path)).toEqual(
        expect.arrayContaining(['/docs', '/docs/assets/swagger-ui.css', '/docs/assets/swagger-ui-bundle.js', '/openapi.json']),
      );
      expect(result.externalRequests).toEqual([]);
      expect(withoutFavicon(result.failedRequests)).toEqual([]);
      expect(withoutFavicon(result.pageErrors)).toEqual([]);
    },
    45_000,
  );

  browserTest(
    'in token mode, Authorize takes a token and Try it out sends it',
    async () => {
      const ts = await startTestServer({ TIMESTORE_AUTH: 'tokens' });
      try {
        const { secret } = await new TokenService({ sql: ts.sql, log: silentLog, cacheMs: 0 }).create({ name: 'swagger-user', scopes: ['admin'] }, 'test');
        // What a person does, one step per poll: Authorize, paste the token, close; open GET /admin/tokens, Try it out, Execute.
        const clicks = `(() => {
          const s = (window.__steps ??= { step: 0 });
          const q = (selector, root = document) => root.querySelector(selector);
          const operation = () => q('.opblock-get [data-path="/admin/tokens"]')?.closest('.opblock');
          const click = (selector, root) => { const element = root && q(selector, root); if (!element) return false; element.click(); s.step++; return false; };
          switch (s.step) {
            case 0: return operation() ? click('.btn.authorize', document) : false;
            case 1: {
              const input = q('.modal-ux input');
              if (!input) return false;
              Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(input, ${JSON.stringify(secret)});
              input.dispatchEvent(new Event('input', { bubbles: true }));
              s.step++;
              return false;
            }
            case 2: return click('.auth-btn-wrapper .authorize', q('.modal-ux'));
            case 3: return click('.btn-done', q('.modal-ux'));
            case 4: return click('.opblock-summary-control', operation());
            case 5: return click('.try-out__btn', operation());
            case 6: return click('.execute', operation());
            default: return !!q('.live-responses-table .response-col_status', operation());
          }
        })()`;
        const result = await renderPage(`http://127.0.0.1:${new URL(ts.url).port}/docs`, { waitFor: clicks, timeoutMs: 30_000 });
        expect(result.dom).toContain('<td class="response-col_status">200</td>');
        expect(result.dom).toContain('swagger-user');
        expect(result.dom).toContain(`Bearer ${secret}`);
        expect(withoutFavicon(result.pageErrors)).toEqual([]);
      } finally {
        await ts.stop();
      }
    },
    60_000,
  );

  browserTest(
    'needs nothing external when reached by a host name, as when deployed',
    async () => {
      // Swagger UI treats localhost/127.0.0.1 specially (e.g. its online validator badge).
      const url = `http://timestore.test:${server.port}/docs`;
      const result = await renderPage(url, {
        waitFor: SWAGGER_RENDERED,
        loopbackAliases: ['timestore.test'],
        timeoutMs: 20_000,
      });
      expect(result.dom).toContain('data-path="/health"');
      expect(result.externalRequests).toEqual([]);
      expect(withoutFavicon(result.failedRequests)).toEqual([]);
    },
    45_000,
  );
});
