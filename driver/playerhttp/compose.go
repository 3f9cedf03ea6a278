package playerhttp

import (
	"context"
	"errors"
	"net"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// Signalling is a session's signalling as one unit: the router and the
// player port in front of it. The session supervisor, the standalone
// command, the tests and the benchmarks all compose it here.
type Signalling struct {
	Router *signalling.Server
	Web    *Server
}

// Start makes and starts a router configured by rc and a player port
// configured by wc (wc.Router is set here). The player port follows the
// router's events before rc.Hooks.Event sees them. On an error nothing is
// left listening.
func Start(rc signalling.Config, wc Config) (*Signalling, error) {
	st := &Signalling{}
	next := rc.Hooks.Event
	rc.Hooks.Event = func(e signalling.Event) {
		st.Web.Event(e) // set before the router starts; events come after
		if next != nil {
			next(e)
		}
	}
	router, err := signalling.New(rc)
	if err != nil {
		return nil, err
	}
	wc.Router = router
	web, err := New(wc)
	if err != nil {
		return nil, err
	}
	st.Router, st.Web = router, web
	if err := router.Start(); err != nil {
		_ = web.Shutdown(context.Background()) // closes http_root
		return nil, err
	}
	if err := web.Start(); err != nil {
		_ = web.Shutdown(context.Background())
		_ = router.Shutdown(context.Background())
		return nil, err
	}
	return st, nil
}

// PlayerAddr is the bound player port.
func (st *Signalling) PlayerAddr() net.Addr { return st.Web.Addr() }

// StreamerAddr is the bound streamer endpoint.
func (st *Signalling) StreamerAddr() net.Addr { return st.Router.StreamerAddr() }

// Shutdown stops the player port (no new players), then the router, which
// closes every peer with a close frame.
func (st *Signalling) Shutdown(ctx context.Context) error {
	return errors.Join(st.Web.Shutdown(ctx), st.Router.Shutdown(ctx))
}
