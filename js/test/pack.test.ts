// `npm pack` of both packages, installed into a fresh temporary folder with
// react and react-dom: a small app type-checks against the tarballs' types,
// builds with esbuild for the browser, and renders on the server (the
// packages are safe to import there) — they work from their tarballs, not
// only inside the workspace.
import { afterAll, describe, expect, it } from 'vitest';
import { build } from 'esbuild';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsRoot } from './hubd.js';

const APP = `'use client';
import { StrictMode } from 'react';
import { HubClient } from '@sessionhub/client';
import type { Participant } from '@sessionhub/client';
import { SocketProvider, ConnectionStatus, ParticipantsList, SessionConnection, useSessionParticipants, useSocket } from '@sessionhub/react';

function Names() {
  const names: string[] = useSessionParticipants((ps: readonly Participant[]) => ps.map((p) => p.name));
  const { status, join } = useSocket();
  return <p data-status={status} onClick={() => void join('demo', { name: 'Ada' })}>{names.join(', ')}</p>;
}

export function App({ url }: { url: string }) {
  return (
    <StrictMode>
      <SocketProvider url={url} sessionId="demo" userInfo={{ name: 'Ada' }}>
        <ConnectionStatus />
        <ParticipantsList />
        <SessionConnection />
        <Names />
      </SocketProvider>
    </StrictMode>
  );
}
export const isClient = typeof HubClient === 'function';
`;

const BROWSER = `import { createRoot } from 'react-dom/client';
import { App } from './app';
createRoot(document.getElementById('root')!).render(<App url="ws://localhost:8080/ws" />);
`;

const SERVER = `import { renderToString } from 'react-dom/server';
import { App, isClient } from './app';
console.log(JSON.stringify({ isClient, html: renderToString(<App url="ws://localhost:8080/ws" />), window: typeof window }));
`;

describe('the packed packages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sessionhub-pack-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('install from their tarballs, type-check, build with esbuild and render on a server', async () => {
    // Asynchronous on purpose: a worker whose event loop blocks for a minute loses vitest's RPC.
    const run = async (cmd: string, args: string[], cwd: string): Promise<string> => (await promisify(execFile)(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
    const npm = (args: string[], cwd: string): Promise<string> => run('npm', args, cwd);
    await npm(['pack', '--pack-destination', dir, '-w', '@sessionhub/client', '-w', '@sessionhub/react'], jsRoot);
    const tarballs = readdirSync(dir).filter((f) => f.endsWith('.tgz')).sort();
    expect(tarballs).toEqual(['sessionhub-client-1.1.0.tgz', 'sessionhub-react-1.1.0.tgz']);

    const app = join(dir, 'app');
    mkdirSync(app, { recursive: true });
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }));
    await npm(['install', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs.map((t) => join(dir, t)), 'react@19.2.0', 'react-dom@19.2.0', '@types/react@19', '@types/react-dom@19'], app);
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', '@sessionhub', 'react', 'package.json'), 'utf8'));
    expect(installed.type).toBe('module');
    expect(Object.keys(JSON.parse(readFileSync(join(app, 'node_modules', '@sessionhub', 'client', 'package.json'), 'utf8')).dependencies ?? {})).toEqual([]);

    writeFileSync(join(app, 'app.tsx'), APP);
    writeFileSync(join(app, 'browser.tsx'), BROWSER);
    writeFileSync(join(app, 'server.tsx'), SERVER);
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', jsx: 'react-jsx', strict: true, noEmit: true, lib: ['ES2022', 'DOM'], skipLibCheck: false }, include: ['*.tsx'] }),
    );
    await run(process.execPath, [join(jsRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], app);

    const web = await build({
      absWorkingDir: app,
      entryPoints: ['browser.tsx'],
      bundle: true,
      format: 'esm',
      minify: true,
      jsx: 'automatic',
      define: { 'process.env.NODE_ENV': '"production"' },
      outfile: join(app, 'out', 'browser.js'),
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(web.metafile.inputs);
    expect(inputs.some((i) => i.includes('node_modules/@sessionhub/client/dist/index.js'))).toBe(true);
    expect(inputs.some((i) => i.includes('node_modules/@sessionhub/react/dist/'))).toBe(true);

    await build({
      absWorkingDir: app,
      entryPoints: ['server.tsx'],
      bundle: true,
      platform: 'node',
      format: 'esm',
      jsx: 'automatic',
      packages: 'external',
      outfile: join(app, 'out', 'server.mjs'),
      logLevel: 'silent',
    });
    const out = JSON.parse(await run(process.execPath, [join(app, 'out', 'server.mjs')], app));
    expect(out.isClient).toBe(true);
    expect(out.window).toBe('undefined');
    expect(out.html).toContain('data-status="disconnected"');
    expect(out.html).toContain('sh-connection-status');
  });
});
