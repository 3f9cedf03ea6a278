package sessionapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to a supervisor's state socket; the driver uses it.
type Client struct {
	http *http.Client
}

// NewClient returns a client for the supervisor listening on socketPath.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns: 2,
	}
	return &Client{http: &http.Client{Transport: tr}}
}

// State returns the supervisor's current state.
func (c *Client) State(ctx context.Context) (State, error) {
	var st State
	err := c.get(ctx, RouteState, &st)
	return st, err
}

// Events long-polls for events after seq; it returns an empty list when
// nothing happened within the poll window.
func (c *Client) Events(ctx context.Context, after uint64) ([]Event, error) {
	var evs []Event
	err := c.get(ctx, RouteEvents+"?"+AfterParam+"="+strconv.FormatUint(after, 10), &evs)
	return evs, err
}

// Stop asks the supervisor to stop the app with signal, escalating to SIGKILL
// after timeout, and then to tear the session down.
func (c *Client) Stop(ctx context.Context, signal string, timeout time.Duration) error {
	b, _ := json.Marshal(StopRequest{Signal: signal, Timeout: timeout})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://session"+RouteStop, bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("session stop: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("session stop: %s", resp.Status)
	}
	return nil
}

// Signal sends a signal (by name, e.g. "SIGHUP") to the app's process group.
func (c *Client) Signal(ctx context.Context, signal string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://session"+RouteSignal+"?"+SignalParam+"="+url.QueryEscape(signal), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("session signal: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("session signal: %s", strings.TrimSpace(string(b)))
	}
	return nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://session"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("session %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("session %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("session %s: decode: %w", path, err)
	}
	return nil
}

// Close releases idle connections.
func (c *Client) Close() { c.http.CloseIdleConnections() }
