// Bundles the player pages into driver/playerhttp/webroot/dist/<frontend>,
// where the Go build embeds them (go:embed): one page per Epic frontend line
// the task config's `frontend` field can pick. Run:
// npm --prefix web ci && npm --prefix web run build
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

// The frontend lines, by the name the task config uses (config.Frontends
// lists the same names). src/player.ts imports the neutral names below;
// each build points them at one line's packages (pinned in package.json).
const frontends = {
    'ue5.7': {
        lib: '@epicgames-ps/lib-pixelstreamingfrontend-ue5.7',
        ui: '@epicgames-ps/lib-pixelstreamingfrontend-ui-ue5.7'
    },
    'ue5.5': {
        lib: '@epicgames-ps/lib-pixelstreamingfrontend-ue5.5',
        ui: '@epicgames-ps/lib-pixelstreamingfrontend-ui-ue5.5'
    }
};

const html = await readFile(join(here, 'src', 'index.html'), 'utf8');
if (!html.includes('src="player.js"')) throw new Error('src/index.html no longer loads player.js');

await rm(out, { recursive: true, force: true });
for (const [name, pkgs] of Object.entries(frontends)) {
    const dir = join(out, name);
    await mkdir(dir, { recursive: true });
    const result = await build({
        absWorkingDir: here, // aliases resolve from web/, wherever the build runs
        entryPoints: [join(here, 'src', 'player.ts')],
        bundle: true,
        minify: true,
        format: 'esm',
        target: ['es2020'],
        outdir: dir,
        entryNames: '[name].[hash]',
        alias: { 'pixelstreaming-frontend': pkgs.lib, 'pixelstreaming-frontend-ui': pkgs.ui },
        define: { __FRONTEND__: JSON.stringify(name) },
        legalComments: 'linked',
        metafile: true,
        logLevel: 'warning'
    });
    const player = Object.keys(result.metafile.outputs)
        .map((p) => basename(p))
        .find((n) => /^player\.[A-Z2-7]{8}\.js$/.test(n));
    if (!player) throw new Error(`esbuild wrote no player.HASH.js for ${name}`);
    await writeFile(join(dir, 'index.html'), html.replace('src="player.js"', `src="${player}"`));

    for (const file of await readdir(dir)) {
        const data = await readFile(join(dir, file));
        await writeFile(join(dir, file + '.gz'), gzipSync(data, { level: 9 }));
        await writeFile(
            join(dir, file + '.br'),
            brotliCompressSync(data, {
                params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: data.length }
            })
        );
    }
    console.log(`player page (${name}) written to ${dir} (${player}, with .gz and .br)`);
}
