package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// The histograms and counters that answer operators' questions (README,
// "Metrics"). Each replica counts what it did itself, so sums across replicas
// are right; gauges read from the shared database are exported by the leader
// only (bridgeCollector).
type relayMetrics struct {
	latency   *prometheus.HistogramVec
	queueWait prometheus.Histogram
	duration  prometheus.Histogram
	started   *prometheus.CounterVec
	ended     *prometheus.CounterVec
	pollLag   prometheus.Histogram
	outbound  *prometheus.CounterVec
}

func newRelayMetrics(reg prometheus.Registerer) *relayMetrics {
	m := &relayMetrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "handoff_relay_latency_seconds",
			Help:    "Time from the bridge receiving a message to its destination accepting it, by direction (user_to_agent, agent_to_user; bot: until the bot answered).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60},
		}, []string{"direction"}),
		queueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "handoff_queue_wait_seconds",
			Help:    "Time from the handoff to the agent's first message.",
			Buckets: []float64{5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600},
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "handoff_duration_seconds",
			Help:    "Time from the handoff to the end of the human chat.",
			Buckets: []float64{60, 300, 600, 1200, 1800, 3600, 7200, 14400},
		}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_handoffs_started_total",
			Help: "Handoffs to a human agent, by the bot's reason.",
		}, []string{"reason"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_handoffs_ended_total",
			Help: "Handoffs that ended, by close reason.",
		}, []string{"reason"}),
		pollLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "handoff_poll_lag_seconds",
			Help:    "Age of an agent message when it reached the bridge (poll or webhook), by the desk's timestamp.",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300},
		}),
		outbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "handoff_outbound_requests_total",
			Help: "HTTP requests to outside systems (servicenow, teams, rasa), by status code (error: no answer).",
		}, []string{"system", "code"}),
	}
	reg.MustRegister(m.latency, m.queueWait, m.duration, m.started, m.ended, m.pollLag, m.outbound)
	for _, d := range []bridge.Direction{bridge.DirUserToAgent, bridge.DirAgentToUser, bridge.DirBot} {
		m.latency.WithLabelValues(string(d)) // every direction is present from the start
	}
	return m
}

// Relayed implements bridge.Observer.
func (m *relayMetrics) Relayed(dir bridge.Direction, latency time.Duration) {
	m.latency.WithLabelValues(string(dir)).Observe(latency.Seconds())
}

// reasonLabel keeps a bot-provided reason a bounded label value.
func reasonLabel(r string) string {
	if r == "" {
		return "unknown"
	}
	if len(r) > 40 {
		return "other"
	}
	for _, c := range r {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return "other"
		}
	}
	return r
}

// observedStore counts handoffs, queue waits, durations and poll lag from
// the state changes and agent messages the relay commits: the events of a
// transaction are counted only once it committed. It wraps the store itself,
// not any bridge.Store, so that what the relay finds on the store beyond
// bridge.Store stays visible through it, unobserved since it changes
// nothing: View (read-only transactions, on SQLite in the read pool) and
// ReadItem (an outbox item's reads in one statement, outside a transaction).
// An embedded bridge.Store hid both: every delivery in `serve` then read its
// item in a transaction.
type observedStore struct {
	*store.Store
	m *relayMetrics
}

func (s observedStore) Update(ctx context.Context, fn func(tx bridge.Tx) error) error {
	var events []func()
	err := s.Store.Update(ctx, func(tx bridge.Tx) error {
		events = events[:0] // a retried transaction starts over
		return fn(observedTx{Tx: tx, m: s.m, events: &events})
	})
	if err == nil {
		for _, e := range events {
			e()
		}
	}
	return err
}

type observedTx struct {
	bridge.Tx
	m      *relayMetrics
	events *[]func()
}

func (t observedTx) UpdateSession(ctx context.Context, s bridge.Session, expect bridge.State) error {
	if err := t.Tx.UpdateSession(ctx, s, expect); err != nil {
		return err
	}
	m := t.m
	switch {
	case expect == bridge.StateBot && s.State == bridge.StateQueued:
		reason := reasonLabel(s.Reason)
		*t.events = append(*t.events, func() { m.started.WithLabelValues(reason).Inc() })
	case expect == bridge.StateQueued && s.State == bridge.StateLive && !s.QueuedAt.IsZero() && !s.LiveAt.IsZero():
		wait := s.LiveAt.Sub(s.QueuedAt).Seconds()
		*t.events = append(*t.events, func() { m.queueWait.Observe(max(wait, 0)) })
	case expect != bridge.StateClosed && s.State == bridge.StateClosed && !s.QueuedAt.IsZero():
		reason := string(s.CloseReason)
		d := s.ClosedAt.Sub(s.QueuedAt).Seconds()
		*t.events = append(*t.events, func() {
			m.ended.WithLabelValues(reasonLabel(reason)).Inc()
			m.duration.Observe(max(d, 0))
		})
	}
	return nil
}

func (t observedTx) InsertMessage(ctx context.Context, msg *bridge.Message) (bool, error) {
	inserted, err := t.Tx.InsertMessage(ctx, msg)
	if err == nil && inserted && msg.Source == bridge.SourceAgent && !msg.SentAt.IsZero() && !msg.CreatedAt.IsZero() {
		lag := msg.CreatedAt.Sub(msg.SentAt).Seconds()
		m := t.m
		*t.events = append(*t.events, func() { m.pollLag.Observe(max(lag, 0)) })
	}
	return inserted, err
}

// countingTransport counts outbound requests by system and status code.
type countingTransport struct {
	next   http.RoundTripper
	system string
	m      *relayMetrics
}

func (t countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.m.outbound.WithLabelValues(t.system, code).Inc()
	return resp, err
}

// outboundClient returns base (or a fresh client with timeout) whose requests
// are counted as system's. defaultRT is the transport when base has none.
func (m *relayMetrics) outboundClient(base *http.Client, system string, timeout time.Duration, defaultRT http.RoundTripper) *http.Client {
	c := &http.Client{Timeout: timeout}
	if base != nil {
		cc := *base
		c = &cc
	}
	rt := c.Transport
	if rt == nil {
		rt = defaultRT
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = countingTransport{next: rt, system: strings.ToLower(system), m: m}
	return c
}
