// Prints the size of each package minified (esbuild, ESM, browser) and
// gzipped (gzip -9), beside socket.io-client and centrifuge built the same
// way in the same run (installed into a temporary folder, never committed).
// Run `npm run build` first. Usage: node scripts/sizes.mjs
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const js = dirname(dirname(fileURLToPath(import.meta.url)));
const tmp = mkdtempSync(join(tmpdir(), 'sessionhub-sizes-'));
try {
  writeFileSync(join(tmp, 'package.json'), JSON.stringify({ name: 'sizes', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', 'socket.io-client@4', 'centrifuge@5'], { cwd: tmp, stdio: 'ignore' });
  const version = (dir, name) => JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version;
  const cases = [
    { name: '@sessionhub/client', dir: js, entry: `export * from '@sessionhub/client';`, external: [] },
    { name: '@sessionhub/react (react, client external)', dir: js, entry: `export * from '@sessionhub/react';`, external: ['react', 'react/jsx-runtime', 'react-dom', '@sessionhub/client'] },
    { name: '@sessionhub/react + client (react external)', dir: js, entry: `export * from '@sessionhub/react'; export * from '@sessionhub/client';`, external: ['react', 'react/jsx-runtime', 'react-dom'] },
    { name: `socket.io-client ${version(tmp, 'socket.io-client')}`, dir: tmp, entry: `export * from 'socket.io-client';`, external: [] },
    { name: `centrifuge ${version(tmp, 'centrifuge')}`, dir: tmp, entry: `export * from 'centrifuge';`, external: [] },
  ];
  console.log('| package | minified | min + gzip -9 |\n|---|---:|---:|');
  for (const c of cases) {
    const entry = join(c.dir, `.size-entry-${process.pid}.mjs`);
    writeFileSync(entry, c.entry);
    try {
      const out = await build({ entryPoints: [entry], absWorkingDir: c.dir, bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2022', external: c.external, write: false, logLevel: 'silent', define: { 'process.env.NODE_ENV': '"production"' } });
      const code = out.outputFiles[0].contents;
      const gz = execFileSync('gzip', ['-9', '-c'], { input: code });
      console.log(`| ${c.name} | ${code.length} B | ${gz.length} B |`);
    } finally {
      rmSync(entry, { force: true });
    }
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
