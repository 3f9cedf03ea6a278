// Drives Epic's frontend, as served by our signalling server, in Debian's
// headless Chromium through playwright-core (never a downloaded browser).
// Usage: node web/test/browser.mjs PAGE_URL STREAMER_ID
// Prints one JSON line {"ok":true,...} once the page has connected, listed
// the streamers and auto-subscribed to STREAMER_ID. Then it answers lines on
// stdin: "playerId" prints {"playerId":...} once the frontend holds the id
// the server gave it (from a forwarded offer), "done" closes the browser.
import { chromium } from 'playwright-core';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [url, streamerId] = process.argv.slice(2);
if (!url || !streamerId) {
    console.error('usage: node browser.mjs PAGE_URL STREAMER_ID');
    process.exit(2);
}

const deadlineMs = 30000;
const userDataDir = await mkdtemp(join(tmpdir(), 'pixelstream-chromium-'));
let context;
const fail = async (msg) => {
    console.log(JSON.stringify({ ok: false, error: msg }));
    if (context) await context.close().catch(() => {});
    await rm(userDataDir, { recursive: true, force: true });
    process.exit(1);
};
const timer = setTimeout(() => fail(`no result within ${deadlineMs} ms`), deadlineMs);

try {
    context = await chromium.launchPersistentContext(userDataDir, {
        executablePath: '/usr/bin/chromium',
        headless: true,
        args: [
            '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'
        ]
    });
    const page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => console.error(`[page ${m.type()}] ${m.text()}`));
    page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));

    const resp = await page.goto(url, { waitUntil: 'load' });
    if (!resp || resp.status() !== 200) await fail(`page answered ${resp && resp.status()}`);
    await page.waitForFunction(() => window.pixelStreaming !== undefined, null, { timeout: deadlineMs });

    // Hook the frontend's own events before asking it to connect.
    const result = await page.evaluate((wanted) => new Promise((resolve) => {
        const ps = window.pixelStreaming;
        ps.addEventListener('streamerListMessage', (e) => {
            resolve({
                ids: e.data.messageStreamerList.ids,
                autoSelected: e.data.autoSelectedStreamerId,
                frontend: window.pixelStreamingFrontend,
                wanted
            });
        });
        ps.connect();
    }), streamerId);
    if (!result.ids.includes(streamerId) || result.autoSelected !== streamerId) {
        await fail(`frontend listed ${JSON.stringify(result.ids)} and selected ${JSON.stringify(result.autoSelected)}`);
    }
    console.log(JSON.stringify({ ok: true, ...result }));

    const rl = createInterface({ input: process.stdin });
    for await (const line of rl) {
        if (line === 'done') break;
        if (line === 'playerId') {
            // The frontend keeps the playerId of the offer it was forwarded
            // (Epic's ue5.7 line; ue5.5 has no such field).
            const handle = await page.waitForFunction(
                () => window.pixelStreaming.webRtcController && window.pixelStreaming.webRtcController.playerId,
                null, { timeout: deadlineMs });
            console.log(JSON.stringify({ playerId: await handle.jsonValue() }));
        }
    }
    rl.close();
    clearTimeout(timer);
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
    process.exit(0);
} catch (e) {
    await fail(String(e && e.stack ? e.stack : e));
}
