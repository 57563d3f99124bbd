/**
 * The embedded catalog's thread (a worker thread's entry point): PGlite, its session and its Unix
 * socket run here, so that PostgreSQL's work (about half of what the HTTP thread did for each small
 * batch: docs/performance.md, "The embedded catalog on its own thread") runs beside the requests'
 * rather than between them. The process's postgres.js reaches the session through messages
 * ({@link CatalogThreadRequest}, {@link CatalogThreadEvent}); embedded.ts starts the thread and
 * holds the storage root's lock.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { type CatalogThreadData, type CatalogThreadEvent, type CatalogThreadRequest, serveEmbeddedCatalog } from './embedded.ts';
import type { InProcessSocket } from './embedded-session.ts';

const port = parentPort!;
const send = (event: CatalogThreadEvent) => port.postMessage(event);
try {
  const catalog = await serveEmbeddedCatalog(workerData as CatalogThreadData);
  const connections = new Map<number, InProcessSocket>();
  port.on('message', async (request: CatalogThreadRequest) => {
    switch (request.type) {
      case 'open': {
        const { connection } = request;
        const socket = catalog.connect();
        connections.set(connection, socket);
        socket.on('data', (bytes: Uint8Array) => send({ type: 'data', connection, bytes }));
        socket.on('error', (err: Error) => send({ type: 'error', connection, message: err.message }));
        socket.on('close', () => {
          connections.delete(connection);
          send({ type: 'close', connection });
        });
        break;
      }
      case 'write':
        connections.get(request.connection)?.write(request.bytes);
        break;
      case 'end':
        connections.get(request.connection)?.end();
        break;
      case 'stop':
        for (const socket of connections.values()) socket.end();
        await catalog.stop();
        send({ type: 'stopped' });
        port.close();
        break;
    }
  });
  send({ type: 'started', socketPath: catalog.socketPath, socketDir: catalog.socketDir });
} catch (err) {
  send({ type: 'failed', message: (err as Error).message });
  port.close();
}
