import { createServer } from 'node:net';
import { execFileSync } from 'node:child_process';

/** A TCP port on 127.0.0.1 that was free a moment ago (synchronous, for harness code). */
export function freePort(): number {
  const out = execFileSync(process.execPath, [
    '-e',
    "const s=require('node:net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})",
  ]);
  return Number(out.toString().trim());
}

/** The same, asynchronously. */
export function freePortAsync(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
