// Command visitors is a load generator of simulated visitors: each does
// what a browser does through the gateway (or against one session's URL)
// up to the first complete video keyframe, then counts frames for a few
// seconds. It prints p50/p95/p99 per stage as a Markdown table, or with
// -json one JSON line.
//
//	go run ./bench/visitors -url http://gateway:8080/ -n 20
//	go run ./bench/visitors -url http://gateway:8080/ -arrival poisson -rate 0.5 -duration 2m
//	go run ./bench/visitors -url 'http://127.0.0.1:PORT/?token=T' -n 1 -turn -json
//
// A visitor: GET the page with cookies (a gateway's waiting page means
// the queue: it follows /gateway/queue/events and enters with its ticket
// as the waiting page does), loads the scripts the page names, opens the
// signalling WebSocket on the page's origin, listStreamers, subscribe,
// answers the streamer's offer (pion/webrtc), ICE (relay only with -turn,
// as ?ForceTURN), DTLS/SRTP, and waits for the first complete VP8
// keyframe by RTP sequence numbers (it never decodes video, so hundreds
// fit on two cores). It then counts complete frames for -watch (fps,
// freezes as Chrome counts them), stays until -hold and leaves.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"
)

func main() {
	os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line.
type options struct {
	url      string
	n        int
	arrival  string
	rate     float64
	duration time.Duration
	watch    time.Duration
	hold     time.Duration
	timeout  time.Duration
	turn     bool
	streamer string
	insecure bool
	json     bool
	visits   bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("visitors", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.url, "url", "", "the gateway's URL (or one session's, with ?token= when it needs one)")
	fs.IntVar(&o.n, "n", 1, "visitors (with -arrival poisson and -duration: at most this many, 0 = no cap)")
	fs.StringVar(&o.arrival, "arrival", "all", "all: every visitor at once; poisson: exponential gaps at -rate a second; queue: all at once, each leaving after -hold, so those beyond capacity are handed a session as one ends")
	fs.Float64Var(&o.rate, "rate", 1, "poisson: mean arrivals per second")
	fs.DurationVar(&o.duration, "duration", 0, "poisson: keep arriving for this long (n = rate x duration, capped by -n when set explicitly)")
	fs.DurationVar(&o.watch, "watch", 3*time.Second, "how long frames are counted after the first keyframe")
	fs.DurationVar(&o.hold, "hold", 0, "how long a visitor stays after its first keyframe (default: -watch; queue: 2s)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "arrival to first keyframe, at most (includes the time in the queue)")
	fs.BoolVar(&o.turn, "turn", false, "relay only (ICE transport policy relay, as the frontend's ?ForceTURN)")
	fs.StringVar(&o.streamer, "streamer", "", "streamer id to subscribe to (default: the first listed)")
	fs.BoolVar(&o.insecure, "insecure", false, "accept any TLS certificate (self-signed test setups)")
	fs.BoolVar(&o.json, "json", false, "print one JSON line instead of the tables")
	fs.BoolVar(&o.visits, "visits", false, "with -json: add each visitor's own times (visits) for joining with other clocks")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case o.url == "":
		return o, errors.New("-url is required: the gateway's URL, or one session's")
	case o.n < 0 || (o.n == 0 && o.arrival != "poisson"):
		return o, fmt.Errorf("-n %d: want at least one visitor", o.n)
	case o.arrival != "all" && o.arrival != "poisson" && o.arrival != "queue":
		return o, fmt.Errorf("-arrival %q: want all, poisson or queue", o.arrival)
	case o.rate <= 0:
		return o, fmt.Errorf("-rate %g: want a positive rate (arrivals per second)", o.rate)
	case o.watch <= 0 || o.timeout <= 0 || o.hold < 0 || o.duration < 0:
		return o, errors.New("-watch and -timeout must be positive, -hold and -duration not negative")
	}
	if o.arrival == "poisson" && o.duration > 0 {
		want := int(o.rate*o.duration.Seconds() + 0.5)
		if !set["n"] || o.n == 0 || want < o.n {
			o.n = max(1, want)
		}
	}
	if o.hold == 0 {
		o.hold = o.watch
		if o.arrival == "queue" {
			o.hold = 2 * time.Second
		}
	}
	o.hold = max(o.hold, o.watch)
	return o, nil
}

func mainArgs(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "visitors:", err)
		return 2
	}
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "visitors:", err)
		return 1
	}
	if o.json {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
	} else {
		rep.writeTables(stdout)
	}
	if rep.OK == 0 {
		fmt.Fprintf(stderr, "visitors: no visitor got a keyframe (%v)\n", rep.Errors)
		return 1
	}
	return 0
}

func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// run sends o.n visitors as o.arrival says and reports what they saw.
func run(ctx context.Context, o options) (*report, error) {
	u, err := url.Parse(o.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-url %q: want http(s)://host[:port]/[?token=...]", o.url)
	}
	api, err := newAPI()
	if err != nil {
		return nil, fmt.Errorf("WebRTC: %w", err)
	}
	cfg := &config{url: u, streamer: o.streamer, turn: o.turn, watch: o.watch, hold: o.hold,
		timeout: o.timeout, insecure: o.insecure, api: api}
	results := make([]*result, o.n)
	var wg sync.WaitGroup
	start := time.Now()
	next := start
	for i := range o.n {
		if o.arrival == "poisson" && i > 0 {
			next = next.Add(time.Duration(rand.ExpFloat64() / o.rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(next)):
			case <-ctx.Done():
				results = results[:i]
			}
			if ctx.Err() != nil {
				break
			}
		}
		wg.Go(func() { results[i] = visit(ctx, cfg) })
	}
	wg.Wait()
	return summarize(o, results, time.Since(start)), nil
}

// dist is p50/p95/p99 of one measure, in milliseconds.
type dist struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	N   int     `json:"n"`
}

func distOf(v []float64) dist {
	if len(v) == 0 {
		return dist{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	q := func(p float64) float64 {
		// Nearest rank: the smallest value with at least p of the sample at or below it.
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return dist{P50: q(0.50), P95: q(0.95), P99: q(0.99), N: len(s)}
}

// report is the generator's output; its JSON is the -json line.
type report struct {
	URL          string          `json:"url"`
	Arrival      string          `json:"arrival"`
	Visitors     int             `json:"visitors"`
	OK           int             `json:"ok"`
	Failed       int             `json:"failed"`
	Queued       int             `json:"queued"`
	WallSeconds  float64         `json:"wall_s"`
	FirstFrameMS dist            `json:"first_frame_ms"`
	StageMS      map[string]dist `json:"stage_ms"` // each stage's own time
	AtMS         map[string]dist `json:"at_ms"`    // each stage since arrival
	QueueMS      dist            `json:"queue_ms"`
	HandoverMS   dist            `json:"handover_ms"`
	FPS          dist            `json:"fps"`
	Freezes      int             `json:"freezes"`
	FrozenMS     float64         `json:"frozen_ms"`
	PageBytes    dist            `json:"page_bytes"`
	Candidates   map[string]int  `json:"candidates"`
	Errors       map[string]int  `json:"errors,omitempty"`
	Visits       []visitRecord   `json:"visits,omitempty"`
	stages       []string
}

// visitRecord is one visitor's times, with wall clock anchors (Unix ms).
type visitRecord struct {
	ArrivedMS  int64              `json:"arrived_unix_ms"`
	AssignedMS int64              `json:"assigned_unix_ms,omitempty"` // queued visitors
	LeftMS     int64              `json:"left_unix_ms"`
	AtMS       map[string]float64 `json:"at_ms"`
	Error      string             `json:"error,omitempty"`
}

func summarize(o options, results []*result, wall time.Duration) *report {
	r := &report{URL: redacted(o.url), Arrival: o.arrival, Visitors: len(results), WallSeconds: wall.Seconds(),
		StageMS: map[string]dist{}, AtMS: map[string]dist{}, Candidates: map[string]int{}, Errors: map[string]int{}}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var own, at [numStages][]float64
	var first, queue, handover, fps, bytes []float64
	var departures []time.Time
	for _, res := range results {
		if res != nil && !res.left.IsZero() && res.at[stFirstFrame] > 0 {
			departures = append(departures, res.left)
		}
	}
	sort.Slice(departures, func(i, j int) bool { return departures[i].Before(departures[j]) })
	for _, res := range results {
		if res == nil {
			continue
		}
		if o.visits {
			v := visitRecord{ArrivedMS: res.arrived.UnixMilli(), LeftMS: res.left.UnixMilli(), AtMS: map[string]float64{}}
			if !res.assigned.IsZero() {
				v.AssignedMS = res.assigned.UnixMilli()
			}
			for st := 0; st < numStages; st++ {
				if res.at[st] > 0 {
					v.AtMS[stageNames[st]] = ms(res.at[st])
				}
			}
			if res.err != nil {
				v.Error = res.failedIn + ": " + truncate(res.err.Error(), 200)
			}
			r.Visits = append(r.Visits, v)
		}
		if res.queued {
			r.Queued++
		}
		bytes = append(bytes, float64(res.bytes))
		if res.err != nil {
			r.Failed++
			r.Errors[res.failedIn+": "+truncate(res.err.Error(), 120)]++
			continue
		}
		r.OK++
		prev := time.Duration(0)
		for st := 0; st < numStages; st++ {
			if res.at[st] == 0 {
				continue
			}
			at[st] = append(at[st], ms(res.at[st]))
			own[st] = append(own[st], ms(res.at[st]-prev))
			prev = res.at[st]
		}
		first = append(first, ms(res.at[stFirstFrame]))
		fps = append(fps, res.fps())
		r.Freezes += res.freezes
		r.FrozenMS += ms(res.frozen)
		if res.cand != "" {
			r.Candidates[res.cand]++
		}
		if res.queued && !res.assigned.IsZero() {
			queue = append(queue, ms(res.assigned.Sub(res.arrived)))
			// Hand-over: the last departure before this visitor was
			// assigned, to its first keyframe.
			i := sort.Search(len(departures), func(i int) bool { return departures[i].After(res.assigned) })
			if i > 0 {
				handover = append(handover, ms(res.arrived.Add(res.at[stFirstFrame]).Sub(departures[i-1])))
			}
		}
	}
	for st := 0; st < numStages; st++ {
		r.StageMS[stageNames[st]] = distOf(own[st])
		r.AtMS[stageNames[st]] = distOf(at[st])
		r.stages = append(r.stages, stageNames[st])
	}
	r.FirstFrameMS, r.QueueMS, r.HandoverMS = distOf(first), distOf(queue), distOf(handover)
	r.FPS, r.PageBytes = distOf(fps), distOf(bytes)
	return r
}

func redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "?"
	}
	if q := u.Query(); q.Has("token") {
		q.Set("token", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// writeTables prints the report as Markdown tables.
func (r *report) writeTables(w io.Writer) {
	fmt.Fprintf(w, "visitors: %d (%s arrival), %d with a keyframe, %d failed, %d queued, %.1fs wall\n\n",
		r.Visitors, r.Arrival, r.OK, r.Failed, r.Queued, r.WallSeconds)
	fmt.Fprintln(w, "| stage | own p50 | own p95 | own p99 | since arrival p50 | p95 | p99 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, st := range r.stages {
		o, a := r.StageMS[st], r.AtMS[st]
		if a.N == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", st, msStr(o.P50), msStr(o.P95), msStr(o.P99), msStr(a.P50), msStr(a.P95), msStr(a.P99))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measure | p50 | p95 | p99 | n |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	row := func(name string, d dist, f func(float64) string) {
		if d.N > 0 {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %d |\n", name, f(d.P50), f(d.P95), f(d.P99), d.N)
		}
	}
	row("arrival to first complete keyframe", r.FirstFrameMS, msStr)
	row("time in the queue", r.QueueMS, msStr)
	row("session end to the next queued visitor's keyframe (hand-over)", r.HandoverMS, msStr)
	row("fps after the first keyframe", r.FPS, func(v float64) string { return fmt.Sprintf("%.1f", v) })
	row("page and asset bytes on the wire", r.PageBytes, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	fmt.Fprintf(w, "\nfreezes: %d (%.0f ms frozen in all); candidate types: %v\n", r.Freezes, r.FrozenMS, r.Candidates)
	for e, n := range r.Errors {
		fmt.Fprintf(w, "error x%d: %s\n", n, e)
	}
}

func msStr(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.1f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}
