// Bundles the player page into driver/playerhttp/webroot/dist, where the Go
// build embeds it (go:embed). Run: npm --prefix web ci && npm --prefix web run build
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'driver', 'playerhttp', 'webroot', 'dist');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
    entryPoints: [join(here, 'src', 'player.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2020'],
    outfile: join(out, 'player.js'),
    legalComments: 'linked',
    logLevel: 'warning'
});
await copyFile(join(here, 'src', 'index.html'), join(out, 'index.html'));
console.log(`player page written to ${out}`);
