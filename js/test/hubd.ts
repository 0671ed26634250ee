// A real hubd for the tests: started as a process on a loopback port, ready
// when it logs "listening"; restartable on the same port.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const jsRoot = dirname(dirname(fileURLToPath(import.meta.url)));

/** The hubd binary: $SESSIONHUB_HUBD, or the one global-setup built. */
export const hubdPath = (): string => process.env.SESSIONHUB_HUBD || join(jsRoot, '.tmp', 'hubd');

/** A port on 127.0.0.1 that nothing listens on (it was free a moment ago). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface Hubd {
  port: number;
  /** http://127.0.0.1:port */
  http: string;
  /** ws://127.0.0.1:port/ws */
  ws: string;
  /** Everything it logged. */
  log(): string;
  /** Stops it (SIGTERM: clients get 1001) and waits for the exit. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
}

/** Starts hubd with args on port (default: a free one) and waits until it listens. */
export async function startHubd(args: string[] = [], port?: number): Promise<Hubd> {
  const p = port ?? (await freePort());
  let proc: ChildProcess | null = null;
  let out = '';
  const start = async (): Promise<void> => {
    out = '';
    const child = spawn(hubdPath(), ['--addr', `127.0.0.1:${p}`, '--log-level', 'info', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = child;
    await new Promise<void>((resolve, reject) => {
      const onData = (b: Buffer): void => {
        out += b.toString();
        if (/msg=listening/.test(out)) resolve();
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`hubd exited (${code}) before listening:\n${out}`)));
    });
  };
  const stop = async (): Promise<void> => {
    const child = proc;
    proc = null;
    if (!child || child.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
  };
  await start();
  return { port: p, http: `http://127.0.0.1:${p}`, ws: `ws://127.0.0.1:${p}/ws`, log: () => out, stop, start };
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

/** An HS256 token as hubd's token mode takes it. */
export function mintToken(secret: string, claims: Record<string, unknown>, ttlSeconds = 3600): string {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify({ iat: now, exp: now + ttlSeconds, ...claims }));
  const sig = b64url(createHmac('sha256', secret).update(`${header}.${body}`).digest());
  return `${header}.${body}.${sig}`;
}
