// Builds hubd once for the whole suite, unless SESSIONHUB_HUBD names one
// (the Go test that drives this suite builds it and passes it).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { hubdPath, jsRoot } from './hubd.js';
import { join } from 'node:path';

export default function setup(): void {
  if (process.env.SESSIONHUB_HUBD) return;
  mkdirSync(join(jsRoot, '.tmp'), { recursive: true });
  execFileSync('go', ['build', '-o', hubdPath(), './cmd/hubd'], { cwd: join(jsRoot, '..'), stdio: 'inherit' });
}
