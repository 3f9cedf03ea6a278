// The player page served by the nomad-driver-pixelstream signalling server:
// Epic's published frontend and UI, wired as Epic's own sample page does.
// URL parameters (?StreamerId=, ?ForceTURN, ?AutoConnect, ?AutoPlayVideo, ...)
// configure it because useUrlParams is on.
//
// build.mjs bundles this file once per frontend line (ue5.7, ue5.5): the
// two neutral module names below are aliases of that line's packages.
import { Config, PixelStreaming } from 'pixelstreaming-frontend';
import { Application, PixelStreamingApplicationStyle } from 'pixelstreaming-frontend-ui';
import { reportQuality } from './stats';

declare const __FRONTEND__: string; // the line this bundle was built from (build.mjs)

declare global {
    interface Window {
        // Exposed so browser tests and embedding pages can hook into the stream.
        pixelStreaming: PixelStreaming;
        // Which of Epic's frontend lines this page is ("ue5.7" or "ue5.5").
        pixelStreamingFrontend: string;
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
    window.pixelStreamingFrontend = __FRONTEND__;
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
