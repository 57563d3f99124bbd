# syntax=docker/dockerfile:1
# timestore as one self-contained executable (built by scripts/build.ts) on slim Debian.
# The embedded Bun runtime and DuckDB library are linux-x64 (glibc) builds, and the build
# embeds @duckdb/node-bindings-linux-x64, so both stages are pinned to linux/amd64.

FROM --platform=linux/amd64 node:20-bookworm-slim AS build
WORKDIR /src
# swagger-ui-dist's @scarf/scarf postinstall would otherwise try to send install analytics.
ENV SCARF_ANALYTICS=false
COPY package.json package-lock.json ./
# patches/: fixes to dependencies that npm's postinstall (patch-package) applies.
COPY patches ./patches
# `npm install` with the committed lockfile, as .ci/run does: the locked versions apply, and its
# postinstall applies patches/.
RUN npm install --no-audit --no-fund
COPY . .
RUN npm run build && ./dist/timestore version

FROM --platform=linux/amd64 debian:bookworm-slim
# ca-certificates: for S3 endpoints behind a private CA (NODE_EXTRA_CA_CERTS) and the system store.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/timestore --shell /usr/sbin/nologin timestore \
 && install -d -o timestore -g timestore -m 0750 /var/lib/timestore
COPY --from=build /src/dist/timestore /usr/local/bin/timestore

# Listening on every interface: before publishing the port, switch to API tokens, e.g.
#   docker run --rm -v timestore-data:/var/lib/timestore <image> token create --name first-admin --scopes admin
#   docker run -d -p 4100:4100 -v timestore-data:/var/lib/timestore -e TIMESTORE_AUTH=tokens <image>
# (the first command prints the token's secret once; with the embedded catalog run it before the
# server starts, later tokens come from POST /admin/tokens). Without it every route is open and
# the server says so at start and in /ready (docs/operations.md, "API tokens").
# The catalog (embedded PGlite), partitions and the extracted libduckdb.so live under the
# storage root. A bind mount must be writable by uid 10001. Bun also writes to /tmp
# (the native addon, migration files) and $HOME (/home/timestore: transpiler cache).
ENV TIMESTORE_HOST=0.0.0.0 \
    TIMESTORE_PORT=4100 \
    TIMESTORE_STORAGE_ROOT=/var/lib/timestore
USER timestore
WORKDIR /var/lib/timestore
VOLUME ["/var/lib/timestore"]
EXPOSE 4100

# No curl in the image: bash's /dev/tcp sends a plain HTTP/1.0 request and checks the status line.
# The first start creates the catalog (initdb, a few seconds), hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TIMESTORE_PORT:-4100} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# timestore handles SIGTERM itself (drains, then exits 0), so it can run as PID 1.
ENTRYPOINT ["/usr/local/bin/timestore"]
CMD ["serve"]
