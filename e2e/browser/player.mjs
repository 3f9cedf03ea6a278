// Drives Debian's headless Chromium (never a downloaded browser) for the e2e
// tests in e2e/browser_test.go. One browser, one isolated context per page,
// so token cookies of one page never reach another.
//
// Protocol: one JSON object per line on stdin, {"id":N,"op":"...",...}; one
// JSON object per line on stdout, {"id":N,"ok":true,"result":...} or
// {"id":N,"ok":false,"error":"..."}. Page console output goes to stderr.
// The script measures; the Go test decides what passes.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';

const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    // Playwright adds a fresh --user-data-dir of its own for every launch.
    args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--autoplay-policy=no-user-gesture-required'
    ]
});

/** @type {Map<string, {context: import('playwright-core').BrowserContext, page: import('playwright-core').Page}>} */
const pages = new Map();

// Runs in every page before its own scripts: keeps every RTCPeerConnection
// the frontend makes, hooks the frontend's events as soon as the page
// assigns window.pixelStreaming, and counts presented video frames.
function instrument() {
    const st = { pcs: [], events: [], presented: 0, firstFrameAt: 0, lastFrameAt: 0, video: null };
    window.__e2e = st;
    const Orig = window.RTCPeerConnection;
    window.RTCPeerConnection = class extends Orig {
        constructor(...args) {
            super(...args);
            st.pcs.push(this);
        }
    };
    const watchVideo = () => {
        const v = document.querySelector('video');
        if (!v || !v.requestVideoFrameCallback) {
            setTimeout(watchVideo, 5);
            return;
        }
        st.video = v;
        const onFrame = () => {
            const now = Date.now();
            if (!st.firstFrameAt) st.firstFrameAt = now;
            st.lastFrameAt = now;
            st.presented++;
            v.requestVideoFrameCallback(onFrame);
        };
        v.requestVideoFrameCallback(onFrame);
    };
    let ps;
    Object.defineProperty(window, 'pixelStreaming', {
        configurable: true,
        get: () => ps,
        set: (v) => {
            ps = v;
            for (const type of ['webRtcConnected', 'webRtcDisconnected', 'webRtcFailed', 'playStream',
                'playStreamError', 'playStreamRejected', 'videoInitialized', 'dataChannelOpen',
                'dataChannelClose', 'streamerListMessage', 'subscribeFailed']) {
                v.addEventListener(type, () => st.events.push({ type, at: Date.now() }));
            }
        }
    });
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', watchVideo);
    else watchVideo();
}

// The page's view of the stream: frames, size, connection, decoder stats.
async function streamState() {
    const st = window.__e2e;
    const v = st.video || document.querySelector('video');
    const q = v && v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    const out = {
        presented: st.presented,
        firstFrameAt: st.firstFrameAt,
        lastFrameAt: st.lastFrameAt,
        totalVideoFrames: q ? q.totalVideoFrames : 0,
        videoWidth: v ? v.videoWidth : 0,
        videoHeight: v ? v.videoHeight : 0,
        paused: v ? v.paused : true,
        hasStream: !!(v && v.srcObject),
        events: st.events.map((e) => e.type),
        eventTimes: Object.fromEntries(st.events.map((e) => [e.type, e.at])),
        peers: st.pcs.map((pc) => pc.connectionState),
        pageLoadedAt: (() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return nav && nav.domContentLoadedEventEnd ? Math.round(performance.timeOrigin + nav.domContentLoadedEventEnd) : 0;
        })(),
        framesDecoded: 0,
        now: Date.now()
    };
    for (const pc of st.pcs) {
        if (pc.connectionState === 'closed') continue;
        const stats = await pc.getStats();
        stats.forEach((s) => {
            if (s.type === 'inbound-rtp' && s.kind === 'video') out.framesDecoded += s.framesDecoded || 0;
        });
    }
    return out;
}

// Average colour of a (2r+1)^2 block of the video's own pixels (its natural
// size, not the element's) around each point.
function samplePixels({ points, r }) {
    const v = window.__e2e.video || document.querySelector('video');
    if (!v || !v.videoWidth) throw new Error('no decoded video to sample');
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(v, 0, 0, c.width, c.height);
    return points.map(([x, y]) => {
        const d = g.getImageData(x - r, y - r, 2 * r + 1, 2 * r + 1).data;
        const sum = [0, 0, 0];
        for (let i = 0; i < d.length; i += 4) {
            sum[0] += d[i];
            sum[1] += d[i + 1];
            sum[2] += d[i + 2];
        }
        const n = d.length / 4;
        return sum.map((s) => Math.round(s / n));
    });
}

// Where video pixel (x, y) is on the page: the element shows the video
// scaled to fit (object-fit: contain), centred.
function videoPointOnPage({ x, y }) {
    const v = window.__e2e.video || document.querySelector('video');
    const b = v.getBoundingClientRect();
    const scale = Math.min(b.width / v.videoWidth, b.height / v.videoHeight);
    const ox = b.left + (b.width - v.videoWidth * scale) / 2;
    const oy = b.top + (b.height - v.videoHeight * scale) / 2;
    return { x: ox + (x + 0.5) * scale, y: oy + (y + 0.5) * scale };
}

// The selected ICE candidate pair of every live peer connection.
async function selectedPairs() {
    const out = [];
    for (const pc of window.__e2e.pcs) {
        if (pc.connectionState === 'closed') continue;
        const stats = await pc.getStats();
        let pairId;
        stats.forEach((s) => {
            if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
        });
        const pair = pairId && stats.get(pairId);
        if (!pair) {
            out.push({ state: pc.connectionState, pair: null });
            continue;
        }
        const local = stats.get(pair.localCandidateId) || {};
        const remote = stats.get(pair.remoteCandidateId) || {};
        out.push({
            state: pc.connectionState,
            pairState: pair.state,
            nominated: !!pair.nominated,
            localType: local.candidateType,
            localProtocol: local.protocol,
            relayProtocol: local.relayProtocol || '',
            localUrl: local.url || '',
            remoteType: remote.candidateType,
            remoteAddress: `${remote.address}:${remote.port}`
        });
    }
    return out;
}

// Loudness of the received audio track through WebAudio: the highest RMS
// an AnalyserNode sees over ms milliseconds, plus the receiver's own level
// counters for the report.
async function audioLevel({ ms }) {
    const pc = window.__e2e.pcs.find((p) => p.connectionState === 'connected');
    if (!pc) throw new Error('no connected peer connection');
    const rx = pc.getReceivers().find((r) => r.track && r.track.kind === 'audio');
    if (!rx) return { tracks: pc.getReceivers().map((r) => r.track && r.track.kind), rms: 0 };
    const ctx = new AudioContext();
    await ctx.resume();
    const src = ctx.createMediaStreamSource(new MediaStream([rx.track]));
    const an = ctx.createAnalyser();
    an.fftSize = 2048;
    src.connect(an);
    const buf = new Float32Array(an.fftSize);
    let maxRms = 0;
    let samples = 0;
    const until = performance.now() + ms;
    while (performance.now() < until) {
        await new Promise((r) => setTimeout(r, 50));
        an.getFloatTimeDomainData(buf);
        let sq = 0;
        for (const s of buf) sq += s * s;
        maxRms = Math.max(maxRms, Math.sqrt(sq / buf.length));
        samples++;
    }
    const contextState = ctx.state;
    await ctx.close();
    let energy = 0;
    let level = 0;
    (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
            energy = s.totalAudioEnergy || 0;
            level = s.audioLevel || 0;
        }
    });
    return {
        rms: maxRms,
        samples,
        trackState: rx.track.readyState,
        trackMuted: rx.track.muted,
        contextState,
        statsAudioLevel: level,
        statsTotalAudioEnergy: energy
    };
}

// Opens a WebSocket to url from inside the page and reports how it ended.
function probeWebSocket({ url }) {
    return new Promise((resolve) => {
        const ws = new WebSocket(url);
        const done = (opened, code) => {
            clearTimeout(timer);
            try { ws.close(); } catch { /* closing a failed socket */ }
            resolve({ opened, code });
        };
        const timer = setTimeout(() => done(false, -1), 10000);
        ws.onopen = () => done(true, 0);
        ws.onclose = (e) => done(false, e.code);
    });
}

function get(name) {
    const p = pages.get(name);
    if (!p) throw new Error(`no page named ${JSON.stringify(name)}`);
    return p;
}

// waitFor polls fn in the page until check(result) holds or timeoutMs passes;
// it returns the last result either way, the Go side asserts.
async function waitFor(page, fn, arg, check, timeoutMs) {
    const until = Date.now() + timeoutMs;
    let last;
    for (;;) {
        try {
            last = await page.evaluate(fn, arg);
        } catch (e) {
            // A page that navigates by itself (the gateway's waiting page
            // entering its session) destroys the context mid-evaluate.
            if (Date.now() > until || !/context was destroyed|navigat/i.test(String(e))) throw e;
            await new Promise((r) => setTimeout(r, 100));
            continue;
        }
        if (check(last) || Date.now() > until) return last;
        await new Promise((r) => setTimeout(r, 100));
    }
}

const ops = {
    async open({ name, url, width = 1280, height = 720 }) {
        if (pages.has(name)) throw new Error(`page ${name} already open`);
        const context = await browser.newContext({ viewport: { width, height } });
        const page = await context.newPage();
        pages.set(name, { context, page });
        page.on('console', (m) => {
            // The frontend logs its stats as big JSON blobs every second; keep the rest.
            // Its logger also appends a stack trace to every line.
            const text = m.text().split('\n')[0];
            if (/^\s*(\{|-{8})|- -+ Stats -+$/.test(text)) return;
            console.error(`[${name} ${m.type()}] ${text}`);
        });
        page.on('pageerror', (e) => console.error(`[${name} error] ${e.message}`));
        await page.addInitScript(instrument);
        const navigatedAt = Date.now();
        const resp = await page.goto(url, { waitUntil: 'domcontentloaded' });
        return { status: resp ? resp.status() : 0, navigatedAt };
    },
    // Waits until the page presents video frames (or timeoutMs passes).
    async play({ name, frames = 3, timeoutMs = 30000 }) {
        const { page } = get(name);
        return waitFor(page, streamState, null, (s) => s.presented >= frames && s.videoWidth > 0, timeoutMs);
    },
    async state({ name }) {
        return get(name).page.evaluate(streamState);
    },
    // Waits until the page shows the stream has ended: the frontend's
    // disconnect event, or its peer connection closed or failed.
    async ended({ name, timeoutMs = 30000 }) {
        const { page } = get(name);
        return waitFor(page, streamState, null, (s) => s.events.includes('webRtcDisconnected') ||
            s.events.includes('webRtcFailed') || s.peers.every((p) => p === 'closed' || p === 'failed'), timeoutMs);
    },
    async sample({ name, points, r = 2 }) {
        return get(name).page.evaluate(samplePixels, { points, r });
    },
    async click({ name, x, y }) {
        const { page } = get(name);
        const at = await page.evaluate(videoPointOnPage, { x, y });
        await page.mouse.move(at.x - 5, at.y - 5);
        await page.mouse.move(at.x, at.y);
        await page.mouse.down();
        await page.mouse.up();
        return at;
    },
    async key({ name, key }) {
        const { page } = get(name);
        await page.keyboard.press(key);
        return null;
    },
    async pairs({ name }) {
        return get(name).page.evaluate(selectedPairs);
    },
    async audio({ name, ms = 1500 }) {
        return get(name).page.evaluate(audioLevel, { ms });
    },
    async websocket({ name, url }) {
        return get(name).page.evaluate(probeWebSocket, { url });
    },
    // The element's attribute (or its text when attr is empty), null when
    // absent; waits up to timeoutMs for the element (the gateway's waiting page).
    async query({ name, selector, attr = '', timeoutMs = 0 }) {
        const { page } = get(name);
        const read = ({ selector, attr }) => {
            const el = document.querySelector(selector);
            if (!el) return null;
            return attr ? el.getAttribute(attr) : el.textContent;
        };
        return waitFor(page, read, { selector, attr }, (v) => v !== null && v !== '', timeoutMs);
    },
    // GETs path from the page (its origin, its cookies) and returns the JSON.
    async fetchJSON({ name, path }) {
        return get(name).page.evaluate(async (p) => {
            const r = await fetch(p, { credentials: 'same-origin' });
            if (!r.ok) throw new Error(`${p}: ${r.status}`);
            return r.json();
        }, path);
    },
    // Loads url in the page's own context again (a reload: same cookies).
    async goto({ name, url }) {
        const { page } = get(name);
        const navigatedAt = Date.now();
        const resp = await page.goto(url, { waitUntil: 'domcontentloaded' });
        return { status: resp ? resp.status() : 0, navigatedAt };
    },
    // Which of Epic's frontend lines the page runs and the playerId its
    // WebRTC controller holds (the 5.7 line keeps the one the server
    // forwards; null before the offer and on older lines).
    async frontend({ name }) {
        return get(name).page.evaluate(() => ({
            frontend: window.pixelStreamingFrontend ?? null,
            playerId: window.pixelStreaming?.webRtcController?.playerId ?? null
        }));
    },
    async close({ name }) {
        const { context } = get(name);
        pages.delete(name);
        await context.close();
        return null;
    }
};

const out = (msg) => process.stdout.write(JSON.stringify(msg) + '\n');
const rl = createInterface({ input: process.stdin });
rl.on('line', async (line) => {
    let req;
    try {
        req = JSON.parse(line);
    } catch (e) {
        out({ id: -1, ok: false, error: `bad request line: ${e.message}` });
        return;
    }
    const op = ops[req.op];
    if (!op) {
        out({ id: req.id, ok: false, error: `unknown op ${JSON.stringify(req.op)}; known: ${Object.keys(ops).join(', ')}` });
        return;
    }
    try {
        out({ id: req.id, ok: true, result: await op(req) });
    } catch (e) {
        out({ id: req.id, ok: false, error: String(e && e.stack ? e.stack : e) });
    }
});
rl.on('close', async () => {
    await browser.close();
    process.exit(0);
});
out({ id: 0, ok: true, result: { version: browser.version() } });
