// Bundles the player page into driver/playerhttp/webroot/dist, where the Go
// build embeds it (go:embed). Run: npm --prefix web ci && npm --prefix web run build
//
// Bundles carry a content hash in their names (player.HASH.js), so the
// session serves them with Cache-Control: immutable and a repeat visit
// fetches only the page; every file gets .gz and .br variants made here
// (node's zlib, highest levels), which the session picks by Accept-Encoding:
// nothing is compressed per request.
import { build } from 'esbuild';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'driver', 'playerhttp', 'webroot', 'dist');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const result = await build({
    entryPoints: [join(here, 'src', 'player.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2020'],
    outdir: out,
    entryNames: '[name].[hash]',
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning'
});
const player = Object.keys(result.metafile.outputs)
    .map((p) => basename(p))
    .find((n) => /^player\.[A-Z2-7]{8}\.js$/.test(n));
if (!player) throw new Error('esbuild wrote no player.HASH.js');
const html = await readFile(join(here, 'src', 'index.html'), 'utf8');
if (!html.includes('src="player.js"')) throw new Error('src/index.html no longer loads player.js');
await writeFile(join(out, 'index.html'), html.replace('src="player.js"', `src="${player}"`));

for (const name of await readdir(out)) {
    const data = await readFile(join(out, name));
    await writeFile(join(out, name + '.gz'), gzipSync(data, { level: 9 }));
    await writeFile(
        join(out, name + '.br'),
        brotliCompressSync(data, {
            params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length }
        })
    );
}
console.log(`player page written to ${out} (${player}, with .gz and .br)`);
