// The player page served by the nomad-driver-pixelstream signalling server:
// Epic's published frontend and UI, wired as Epic's own sample page does.
// URL parameters (?StreamerId=, ?ForceTURN, ?AutoConnect, ?AutoPlayVideo, ...)
// configure it because useUrlParams is on.
import { Config, PixelStreaming } from '@epicgames-ps/lib-pixelstreamingfrontend-ue5.5';
import { Application, PixelStreamingApplicationStyle } from '@epicgames-ps/lib-pixelstreamingfrontend-ui-ue5.5';

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
}

if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
} else {
    start();
}
