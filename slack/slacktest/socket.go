package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
)

// DefaultAppToken is the app-level token (xapp-…) the fake accepts for
// apps.connections.open.
const DefaultAppToken = "xapp-1-A0HANDOFF1-0000000000000-fakeapptoken"

// Socket Mode, as Slack documents it: apps.connections.open (app-level token
// only) answers a single-use wss URL; the connection starts with "hello";
// events and button presses arrive as envelopes (type events_api or
// interactive, with envelope_id, payload, retry_attempt, retry_reason) that
// the app acknowledges by sending {"envelope_id": …}; an envelope not
// acknowledged within 3 s is sent again later; "disconnect" asks the app to
// open a new connection.

// sockConn is one open Socket Mode connection.
type sockConn struct {
	id   int
	conn *websocket.Conn
}

// EnableSocketMode switches the app to Socket Mode (or back): events and
// interactivity payloads then go over the app's WebSocket connections, not
// to the Request URLs.
func (s *Server) EnableSocketMode(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.socketMode = on
}

// AppToken is the app-level token the fake accepts.
func (s *Server) AppToken() string { return s.opts.AppToken }

// SocketStats counts Socket Mode: URLs handed out, connections open now,
// envelopes sent (retries included), acknowledgements received and
// envelopes given up on. Sent = Acked + Unacked once none is in flight.
type SocketStats struct {
	Opens, Open, Sent, Acked int
	// Unacked are envelopes not acknowledged within 3 s, or written to a
	// connection that failed; an events_api one is sent again later, as a
	// new envelope, as Slack does.
	Unacked int
	// UnknownAcks are acknowledgements of envelope ids never sent (or
	// already acknowledged).
	UnknownAcks int
}

// SocketStats returns the Socket Mode counters.
func (s *Server) SocketStats() SocketStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.sockStats
	st.Open = len(s.socks)
	return st
}

// appsConnectionsOpen hands out a single-use WebSocket URL.
func (s *Server) appsConnectionsOpen(map[string]any) (map[string]any, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sockSeq++
	ticket := fmt.Sprintf("fake-%d-%d", s.sockSeq, time.Now().UnixNano())
	s.tickets[ticket] = true
	s.sockStats.Opens++
	return map[string]any{"url": "ws" + s.srv.URL[len("http"):] + "/link/?ticket=" + ticket + "&app_id=" + DefaultApp}, ""
}

// serveLink is the WebSocket endpoint behind the URLs apps.connections.open
// hands out.
func (s *Server) serveLink(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	ok := s.tickets[ticket]
	delete(s.tickets, ticket) // a URL is good for one connection
	s.mu.Unlock()
	if !ok {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	conn.SetReadLimit(1 << 20)
	s.mu.Lock()
	s.sockSeq++
	sc := &sockConn{id: s.sockSeq, conn: conn}
	s.socks[sc.id] = sc
	n := len(s.socks)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.socks, sc.id)
		s.mu.Unlock()
		_ = conn.CloseNow()
	}()
	hello, _ := json.Marshal(map[string]any{"type": "hello", "num_connections": n,
		"debug_info":      map[string]any{"host": "applink-fake-" + strconv.Itoa(sc.id), "build_number": 1, "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": DefaultApp}})
	ctx := r.Context()
	if err := conn.Write(ctx, websocket.MessageText, hello); err != nil {
		return
	}
	for {
		_, raw, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var ack struct {
			EnvelopeID string `json:"envelope_id"`
		}
		if json.Unmarshal(raw, &ack) != nil || ack.EnvelopeID == "" {
			continue
		}
		s.mu.Lock()
		if ch, ok := s.pending[ack.EnvelopeID]; ok {
			delete(s.pending, ack.EnvelopeID)
			s.sockStats.Acked++
			close(ch)
		} else {
			s.sockStats.UnknownAcks++
		}
		s.mu.Unlock()
	}
}

var errNoSocket = errors.New("slacktest: no Socket Mode connection open")

// sendEnvelope sends payload over one open connection as an envelope of
// typ and waits up to 3 s for its acknowledgement: 200 when acknowledged,
// 0 and an error otherwise (Slack then sends it again later).
func (s *Server) sendEnvelope(typ string, payload []byte, attempt int, reason string) (int, error) {
	s.mu.Lock()
	var sc *sockConn
	for _, c := range s.socks { // any open connection, as Slack spreads envelopes
		if sc == nil || c.id > sc.id {
			sc = c
		}
	}
	if sc == nil {
		s.mu.Unlock()
		return 0, errNoSocket
	}
	id := fmt.Sprintf("%08x-fake-4%03x-8000-%012d", eventSeq.Add(1), attempt, time.Now().UnixNano()%1e12)
	acked := make(chan struct{})
	s.pending[id] = acked
	s.sockStats.Sent++
	s.mu.Unlock()
	env := map[string]any{"envelope_id": id, "type": typ, "payload": json.RawMessage(payload), "accepts_response_payload": false}
	if typ == "events_api" {
		env["retry_attempt"], env["retry_reason"] = attempt, ""
		if attempt > 0 {
			env["retry_reason"] = reason
		}
	}
	b, _ := json.Marshal(env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := sc.conn.Write(ctx, websocket.MessageText, b)
	if err == nil {
		select {
		case <-acked:
			return http.StatusOK, nil
		case <-ctx.Done():
			err = errors.New("slacktest: envelope " + id + " not acknowledged within 3 s")
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; !ok {
		return http.StatusOK, nil // acknowledged just as the wait ended
	}
	delete(s.pending, id)
	s.sockStats.Unacked++
	return 0, err
}

// Disconnect sends every open connection Slack's "disconnect" message with
// reason (warning, refresh_requested or link_disabled) and closes it a
// second later, as Slack does when it refreshes a connection.
func (s *Server) Disconnect(reason string) {
	s.mu.Lock()
	var conns []*sockConn
	for _, c := range s.socks {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	b, _ := json.Marshal(map[string]any{"type": "disconnect", "reason": reason, "debug_info": map[string]any{"host": "applink-fake"}})
	for _, c := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = c.conn.Write(ctx, websocket.MessageText, b)
		cancel()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTimer(time.Second)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.closed:
			}
			_ = c.conn.Close(websocket.StatusNormalClosure, "refresh")
		}()
	}
}

// DropConnections cuts every open connection without a word, as a network
// failure does.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.socks {
		_ = c.conn.CloseNow()
	}
}
