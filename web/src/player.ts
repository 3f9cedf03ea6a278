// The player page served by the nomad-driver-pixelstream signalling server:
// Epic's published frontend and UI, wired as Epic's own sample page does.
// URL parameters (?StreamerId=, ?ForceTURN, ?AutoConnect, ?AutoPlayVideo, ...)
// configure it because useUrlParams is on.
import { Config, PixelStreaming } from '@epicgames-ps/lib-pixelstreamingfrontend-ue5.5';
import { Application, PixelStreamingApplicationStyle } from '@epicgames-ps/lib-pixelstreamingfrontend-ui-ue5.5';
import { reportQuality } from './stats';

declare global {
    interface Window {
        // Exposed so browser tests and embedding pages can hook into the stream.
        pixelStreaming: PixelStreaming;
    }
}

const styles = new PixelStreamingApplicationStyle();
styles.applyStyleSheet();

function start(): void {
    const config = new Config({ useUrlParams: true });
    const stream = new PixelStreaming(config);
    const application = new Application({
        stream,
        onColorModeChanged: (isLightMode: boolean) => styles.setColorMode(isLightMode)
    });
    document.body.appendChild(application.rootElement);
    window.pixelStreaming = stream;
    // The stream quality this player sees, to the session (stats.ts).
    reportQuality(() => stream.signallingProtocol);
    // The session's own notice (not one of Epic's messages): sent when the
    // job set max_session_duration, shortly before the session ends.
    stream.signallingProtocol.addListener('sessionWarning', (msg: { message?: string }) =>
        showBanner(String(msg.message ?? 'This session will end soon.'))
    );
}

function showBanner(text: string): void {
    let banner = document.getElementById('pixelstream-session-warning');
    if (!banner) {
        banner = document.createElement('div');
        banner.id = 'pixelstream-session-warning';
        banner.setAttribute('role', 'alert');
        banner.style.cssText =
            'position:fixed;top:0;left:0;right:0;z-index:1000;padding:8px 16px;' +
            'background:#b45309;color:#fff;font:14px sans-serif;text-align:center';
        document.body.appendChild(banner);
    }
    banner.textContent = text;
}

if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
} else {
    start();
}
