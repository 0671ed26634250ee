// Builds the classroom example into dist/ with esbuild: one minified ESM
// bundle, index.html and the components' stylesheet. With --serve it also
// serves dist/ on http://127.0.0.1:3000 (the hub must allow that origin:
// hubd --allowed-origins 127.0.0.1:3000).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'main.tsx')],
  bundle: true,
  format: 'esm',
  minify: true,
  sourcemap: true,
  target: 'es2022',
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  outfile: join(dist, 'main.js'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'index.html'), join(dist, 'index.html'));
const require = createRequire(import.meta.url);
copyFileSync(require.resolve('@sessionhub/react/styles.css'), join(dist, 'sessionhub.css'));

if (process.argv.includes('--serve')) {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };
  createServer(async (req, res) => {
    const path = new URL(req.url, 'http://x').pathname;
    const file = join(dist, path === '/' ? 'index.html' : path.replace(/\.\.+/g, ''));
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': types[extname(file)] || 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  }).listen(3000, '127.0.0.1', () => console.log('classroom example on http://127.0.0.1:3000/?hub=ws://127.0.0.1:8080/ws'));
}
