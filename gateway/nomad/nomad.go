// Package nomad is the gateway's small client for the few Nomad HTTP API
// endpoints it needs: dispatching the parameterized session job, and
// blocking queries on the session job's children and on its service
// registrations (Nomad's own service discovery), and reading the
// allocation a registration names. Plain net/http and
// encoding/json: the nomad/api module would pull in far more than these
// few calls.
package nomad

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxResponse bounds what the gateway reads from Nomad in one answer.
const maxResponse = 16 << 20

// Client talks to one Nomad HTTP API address.
type Client struct {
	Addr      string // "http://127.0.0.1:4646"
	Token     string // ACL token; "" without ACLs
	Namespace string
	HTTP      *http.Client
}

// New returns a client with its own transport.
func New(addr, token, namespace string) *Client {
	return &Client{Addr: strings.TrimRight(addr, "/"), Token: token, Namespace: namespace,
		HTTP: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 6 * time.Minute, // blocking queries wait up to 5m
		}}}
}

// Registration is one service registration of Nomad's service discovery.
type Registration struct {
	ID          string
	ServiceName string
	Namespace   string
	NodeID      string
	JobID       string
	AllocID     string
	Address     string
	Port        int
	Tags        []string
}

// JobStub is one job of the job list.
type JobStub struct {
	ID       string
	ParentID string
	Status   string // pending, running, dead
}

// Allocation is what the gateway checks of an allocation before it trusts
// a registration that names it.
type Allocation struct {
	ID           string
	Namespace    string
	NodeID       string
	JobID        string
	ClientStatus string
	Job          struct {
		ID         string
		ParentID   string
		Dispatched bool
	}
}

// AllocationAfter reads one allocation; with index > 0 it is a blocking
// query that answers when the allocation changes past index or after
// wait. It returns the index to block on next.
func (c *Client) AllocationAfter(ctx context.Context, id string, index uint64, wait time.Duration) (*Allocation, uint64, error) {
	var out Allocation
	idx, err := c.do(ctx, http.MethodGet, "/v1/allocation/"+url.PathEscape(id), blocking(index, wait), nil, &out)
	if err != nil {
		return nil, 0, fmt.Errorf("allocation %s: %w", id, err)
	}
	return &out, idx, nil
}

// DispatchResponse is what a dispatch returns.
type DispatchResponse struct {
	DispatchedJobID string
	EvalID          string
}

// Dispatch starts a child of the parameterized job. A non-empty
// idempotency token makes Nomad return the existing child instead of a
// second one, which is how two gateway replicas that decided the same
// dispatch from the same view make only one.
func (c *Client) Dispatch(ctx context.Context, job string, meta map[string]string, idempotencyToken string) (*DispatchResponse, error) {
	body, err := json.Marshal(map[string]any{"JobID": job, "Meta": meta, "IdempotencyToken": idempotencyToken})
	if err != nil {
		return nil, fmt.Errorf("encode dispatch: %w", err)
	}
	var out DispatchResponse
	if _, err := c.do(ctx, http.MethodPost, "/v1/job/"+url.PathEscape(job)+"/dispatch", nil, body, &out); err != nil {
		return nil, fmt.Errorf("dispatch %s: %w", job, err)
	}
	return &out, nil
}

// Services lists the registrations of a service. With index > 0 it is a
// blocking query: Nomad answers when the list changes past index or after
// wait. It returns the list and the index to block on next.
func (c *Client) Services(ctx context.Context, name string, index uint64, wait time.Duration) ([]Registration, uint64, error) {
	var out []Registration
	idx, err := c.do(ctx, http.MethodGet, "/v1/service/"+url.PathEscape(name), blocking(index, wait), nil, &out)
	if err != nil {
		return nil, 0, fmt.Errorf("service %s: %w", name, err)
	}
	return out, idx, nil
}

// Children lists the dispatched children of job, blocking as Services does.
func (c *Client) Children(ctx context.Context, job string, index uint64, wait time.Duration) ([]JobStub, uint64, error) {
	q := blocking(index, wait)
	q.Set("prefix", job+"/dispatch-")
	var all []JobStub
	idx, err := c.do(ctx, http.MethodGet, "/v1/jobs", q, nil, &all)
	if err != nil {
		return nil, 0, fmt.Errorf("children of %s: %w", job, err)
	}
	out := all[:0]
	for _, j := range all {
		if j.ParentID == job {
			out = append(out, j)
		}
	}
	return out, idx, nil
}

// StopJob deregisters a (dispatched) job.
func (c *Client) StopJob(ctx context.Context, id string) error {
	if _, err := c.do(ctx, http.MethodDelete, "/v1/job/"+url.PathEscape(id), nil, nil, nil); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return nil
}

func blocking(index uint64, wait time.Duration) url.Values {
	q := url.Values{}
	if index > 0 {
		q.Set("index", strconv.FormatUint(index, 10))
		q.Set("wait", wait.String())
	}
	return q
}

// APIError is a non-2xx answer from Nomad.
type APIError struct {
	Status int
	Body   string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("nomad answered %d: %s", e.Status, strings.TrimSpace(e.Body))
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, out any) (uint64, error) {
	if q == nil {
		q = url.Values{}
	}
	if c.Namespace != "" {
		q.Set("namespace", c.Namespace)
	}
	u := c.Addr + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	if c.Token != "" {
		req.Header.Set("X-Nomad-Token", c.Token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return 0, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > maxResponse {
		return 0, errors.New("answer larger than 16 MiB")
	}
	if resp.StatusCode/100 != 2 {
		return 0, &APIError{Status: resp.StatusCode, Body: string(b[:min(len(b), 512)])}
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Nomad-Index"), 10, 64)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return 0, fmt.Errorf("decode answer: %w", err)
		}
	}
	return idx, nil
}
