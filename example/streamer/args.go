package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// defaultStreamerID is what Unreal's Pixel Streaming plugin calls itself when
// no -PixelStreamingID is given.
const defaultStreamerID = "DefaultStreamer"

// options is what the stand-in takes from Unreal's command line.
type options struct {
	// URL is the signalling server's streamer endpoint (ws:// or wss://).
	URL string
	// ID is the streamer id requested in endpointId.
	ID string
	// Width and Height are -ResX/-ResY; 0 means "the display's size".
	Width, Height int
	// Codec is -PixelStreamingEncoderCodec as given; the stand-in encodes VP8.
	Codec string
	// NoSound is Unreal's -nosound: no audio track even with PULSE_SERVER set.
	NoSound bool
	// ReconnectInterval and KeepAliveInterval are PixelStreaming2's
	// -PixelStreamingSignallingReconnectInterval and
	// -PixelStreamingSignallingKeepAliveInterval (seconds); 0 = default.
	ReconnectInterval, KeepAliveInterval time.Duration
	// Clip is the stand-in's own -StandInClip=file.ivf: send this
	// pre-encoded VP8 clip from memory instead of encoding the display.
	Clip string
	// Ignored lists the flags accepted for compatibility but without effect.
	Ignored []string
}

// parseArgs reads Unreal-style arguments: "-Key=Value" or "-Flag", keys
// case-insensitive (as Unreal's FParse), values optionally quoted. Arguments
// the stand-in has no use for are ignored, as Unreal ignores unknown ones.
func parseArgs(args []string) (options, error) {
	o := options{ID: defaultStreamerID}
	connectionURL := false // o.URL came from -PixelStreamingConnectionURL
	for _, arg := range args {
		if !strings.HasPrefix(arg, "-") {
			// Unreal's first positional argument is a map or project name.
			o.Ignored = append(o.Ignored, arg)
			continue
		}
		key, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		value = strings.Trim(value, `"'`)
		switch strings.ToLower(key) {
		case "pixelstreamingconnectionurl", "pixelstreamingurl", "pixelstreamingsignallingurl":
			if err := checkURL(key, value); err != nil {
				return options{}, err
			}
			// As PixelStreaming2 in UE 5.6+: -PixelStreamingConnectionURL
			// wins, the older two are its deprecated aliases.
			if !connectionURL {
				o.URL = value
			}
			connectionURL = connectionURL || strings.EqualFold(key, "pixelstreamingconnectionurl")
		case "pixelstreamingid":
			if value == "" {
				return options{}, fmt.Errorf("-%s: empty streamer id (want e.g. -%s=DefaultStreamer)", key, key)
			}
			o.ID = value
		case "resx", "resy":
			n, err := strconv.Atoi(value)
			if err != nil || n <= 0 || n > 8192 || !hasValue {
				return options{}, fmt.Errorf("-%s=%q: want a width/height in pixels between 1 and 8192", key, value)
			}
			if strings.EqualFold(key, "resx") {
				o.Width = n
			} else {
				o.Height = n
			}
		case "pixelstreamingsignallingreconnectinterval", "pixelstreamingsignallingkeepaliveinterval":
			secs, err := strconv.ParseFloat(value, 64)
			if err != nil || secs <= 0 || secs > 3600 {
				return options{}, fmt.Errorf("-%s=%q: want a number of seconds above 0 and at most 3600, e.g. 2", key, value)
			}
			d := time.Duration(secs * float64(time.Second))
			if strings.EqualFold(key, "pixelstreamingsignallingreconnectinterval") {
				o.ReconnectInterval = d
			} else {
				o.KeepAliveInterval = d
			}
		case "nosound":
			o.NoSound = true
		case "standinclip":
			if value == "" {
				return options{}, fmt.Errorf("-%s: empty path (want -StandInClip=/path/to/clip.ivf, a VP8 IVF file such as `make clip` writes)", key)
			}
			o.Clip = value
		case "pixelstreamingencodercodec":
			o.Codec = strings.ToLower(value)
		default:
			o.Ignored = append(o.Ignored, arg)
		}
	}
	if o.URL == "" {
		return options{}, fmt.Errorf("missing -PixelStreamingConnectionURL=ws://host:port (or -PixelStreamingURL= / -PixelStreamingSignallingURL=): the signalling server's streamer endpoint")
	}
	if (o.Width == 0) != (o.Height == 0) {
		return options{}, fmt.Errorf("-ResX and -ResY must be given together (got ResX=%d ResY=%d)", o.Width, o.Height)
	}
	return o, nil
}

func checkURL(key, value string) error {
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return fmt.Errorf("-%s=%q: want a WebSocket URL such as ws://127.0.0.1:8888", key, value)
	}
	return nil
}
