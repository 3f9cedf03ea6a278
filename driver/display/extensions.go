package display

import (
	"fmt"
	"os"
	"sync"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// xauthMu serialises the XAUTHORITY switch xgb needs: it reads the cookie
// file only from the environment.
var xauthMu sync.Mutex

// HasExtension asks the display whether it offers an X extension, such as
// "GLX", connecting with the session's cookie.
func (d *Display) HasExtension(name string) (bool, error) {
	xauthMu.Lock()
	prev, had := os.LookupEnv("XAUTHORITY")
	_ = os.Setenv("XAUTHORITY", d.authFile)
	conn, err := xgb.NewConnDisplay(d.Name())
	if had {
		_ = os.Setenv("XAUTHORITY", prev)
	} else {
		_ = os.Unsetenv("XAUTHORITY")
	}
	xauthMu.Unlock()
	if err != nil {
		return false, fmt.Errorf("connect to display %s: %w", d.Name(), err)
	}
	defer conn.Close()
	reply, err := xproto.QueryExtension(conn, uint16(len(name)), name).Reply()
	if err != nil {
		return false, fmt.Errorf("query extension %s on %s: %w", name, d.Name(), err)
	}
	return reply.Present, nil
}
