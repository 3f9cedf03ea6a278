// Stream quality reports: every few seconds the page reads its WebRTC stats
// and sends them to the session on the signalling socket as a "stats"
// message (Epic's message type; its data is the report as JSON text). The
// session keeps them for /api/status, its pixelstream_player_* metrics and
// the summary in its task events when the player leaves; the streamer never
// sees them. The report's fields are package quality's Report (Go), which
// also bounds them: keep the two in step.
//
// Frontend-agnostic: the peer connection is found by wrapping the
// RTCPeerConnection constructor (whatever Epic's library version creates
// it), and the message goes out through the library's signalling protocol
// object, which every frontend line has.

export interface QualityReport {
    playedMs: number;
    framesDecoded: number;
    framesDropped: number;
    fps: number;
    freezeCount: number;
    freezeMs: number;
    jitterMs: number;
    packetsLost: number;
    packetsReceived: number;
    rttMs: number;
    bitrateKbps: number;
    candidate: string;
}

interface Sender {
    sendMessage(msg: { type: string; data: string }): void;
}

declare global {
    interface Window {
        // The latest report, for tests and embedding pages.
        pixelstreamQuality?: QualityReport;
    }
}

// The page's peer connections, newest last (a reconnect makes a new one).
const peers: RTCPeerConnection[] = [];

const Native = window.RTCPeerConnection;
if (Native) {
    class Tracked extends Native {
        constructor(config?: RTCConfiguration) {
            super(config);
            peers.push(this);
            if (peers.length > 4) peers.shift();
        }
    }
    window.RTCPeerConnection = Tracked;
}

const round = (v: number, digits = 1): number => Math.round(v * 10 ** digits) / 10 ** digits;

interface Previous {
    at: number;
    bytes: number;
    frames: number;
}

async function collect(pc: RTCPeerConnection, prev: Previous | undefined, firstFrameAt: number): Promise<[QualityReport, Previous] | undefined> {
    const stats = await pc.getStats();
    let video: Record<string, number> | undefined;
    let pairId: string | undefined;
    const byId = new Map<string, Record<string, unknown>>();
    stats.forEach((s: Record<string, unknown>) => {
        byId.set(s.id as string, s);
        if (s.type === 'inbound-rtp' && s.kind === 'video') video = s as Record<string, number>;
        if (s.type === 'transport' && typeof s.selectedCandidatePairId === 'string') pairId = s.selectedCandidatePairId;
    });
    if (!video) return undefined;
    let pair = pairId ? byId.get(pairId) : undefined;
    if (!pair) {
        stats.forEach((s: Record<string, unknown>) => {
            if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
        });
    }
    const local = pair ? byId.get(pair.localCandidateId as string) : undefined;
    const now = performance.now();
    const bytes = video.bytesReceived ?? 0;
    const frames = video.framesDecoded ?? 0;
    const dt = prev ? (now - prev.at) / 1000 : 0;
    const fps = video.framesPerSecond ?? (dt > 0 ? (frames - prev!.frames) / dt : 0);
    const report: QualityReport = {
        playedMs: firstFrameAt > 0 ? Math.round(now - firstFrameAt) : 0,
        framesDecoded: frames,
        framesDropped: video.framesDropped ?? 0,
        fps: round(Math.min(fps, 1000)),
        freezeCount: video.freezeCount ?? 0,
        freezeMs: Math.round((video.totalFreezesDuration ?? 0) * 1000),
        jitterMs: round((video.jitter ?? 0) * 1000),
        packetsLost: Math.max(0, video.packetsLost ?? 0),
        packetsReceived: video.packetsReceived ?? 0,
        rttMs: round(((pair?.currentRoundTripTime as number) ?? 0) * 1000),
        bitrateKbps: dt > 0 ? Math.round(((bytes - prev!.bytes) * 8) / dt / 1000) : 0,
        candidate: String(local?.candidateType ?? '')
    };
    return [report, { at: now, bytes, frames }];
}

/**
 * Starts the reports. protocol returns the frontend's signalling protocol
 * (stream.signallingProtocol) or undefined while there is none.
 */
export function reportQuality(protocol: () => Sender | undefined, everyMs = 5000): void {
    let prev: Previous | undefined;
    let firstFrameAt = 0;
    let pc: RTCPeerConnection | undefined;
    // Until the first frame is decoded the stats are read every 250 ms (not
    // sent) so playedMs starts within 250 ms of it; then a report follows a
    // second later and one every everyMs.
    const tick = async (): Promise<void> => {
        let next = everyMs;
        try {
            const current = peers[peers.length - 1];
            if (current !== pc) {
                pc = current;
                prev = undefined;
                firstFrameAt = 0;
            }
            if (!current || current.connectionState !== 'connected') {
                next = 250;
                return;
            }
            const got = await collect(current, prev, firstFrameAt);
            if (!got) {
                next = 250;
                return;
            }
            const [report, now] = got;
            prev = now;
            if (firstFrameAt === 0) {
                if (report.framesDecoded > 0) firstFrameAt = now.at;
                next = firstFrameAt === 0 ? 250 : 1000;
                return;
            }
            window.pixelstreamQuality = report;
            try {
                protocol()?.sendMessage({ type: 'stats', data: JSON.stringify(report) });
            } catch {
                // The socket is closing: the next tick (or the next connection) reports.
            }
        } finally {
            setTimeout(() => void tick(), next);
        }
    };
    void tick();
}
