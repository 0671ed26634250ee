// Builds @sessionhub/client and copies the built module and its declarations
// to hub/web/hub.js and hub/web/hub.d.ts, which hubd embeds and serves at
// /hub.js and /hub.d.ts. Run it (`npm run web` in js/) after changing
// packages/client/src; js/js_test.go fails while the committed copies differ
// from a fresh build.
import { execFileSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const js = dirname(dirname(fileURLToPath(import.meta.url)));
const client = join(js, 'packages', 'client');
const web = join(js, '..', 'hub', 'web');
execFileSync(process.execPath, [join(js, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(client, 'tsconfig.json')], { stdio: 'inherit' });
copyFileSync(join(client, 'dist', 'index.js'), join(web, 'hub.js'));
copyFileSync(join(client, 'dist', 'index.d.ts'), join(web, 'hub.d.ts'));
console.log('hub/web/hub.js and hub/web/hub.d.ts updated from packages/client');
