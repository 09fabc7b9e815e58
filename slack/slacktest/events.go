package slacktest

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// Sign computes X-Slack-Signature as Slack documents it: "v0=" and the hex
// HMAC-SHA256, keyed with the signing secret, of "v0:<timestamp>:<body>".
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("v0:" + strconv.FormatInt(ts, 10) + ":"))
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

var eventSeq atomic.Int64

// event is an Events API callback ready to send.
type event struct {
	id   string
	body []byte
}

// envelopeLocked wraps an inner event as Slack's event_callback.
func (s *Server) envelopeLocked(inner map[string]any) event {
	id := fmt.Sprintf("Ev%08dHF", eventSeq.Add(1))
	env := map[string]any{
		"token":      "verification-token-deprecated",
		"team_id":    DefaultTeam,
		"api_app_id": DefaultApp,
		"event":      inner,
		"type":       "event_callback",
		"event_id":   id,
		"event_time": s.opts.Now().Unix(),
		"authorizations": []any{map[string]any{"enterprise_id": nil, "team_id": DefaultTeam, "user_id": BotUserID,
			"is_bot": true, "is_enterprise_install": false}},
		"is_ext_shared_channel": false,
		"event_context":         "4-" + id,
	}
	b, _ := json.Marshal(env)
	s.bodies[id] = b
	return event{id: id, body: b}
}

// messageEventLocked is the message event Slack sends for a new message.
func (s *Server) messageEventLocked(m *Message, subtype string) event {
	inner := s.wire(m)
	inner["channel"] = s.opts.Channel
	inner["channel_type"] = s.channelType()
	inner["event_ts"] = m.TS
	delete(inner, "metadata") // message events carry metadata only for metadata subscriptions
	if subtype != "" {
		inner["subtype"] = subtype
	}
	if m.BotID == "" {
		inner["client_msg_id"] = fmt.Sprintf("%08x-0000-4000-8000-%012x", eventSeq.Load(), len(m.Text))
	}
	return s.envelopeLocked(inner)
}

// changedEventLocked is the message_changed event of an edit.
func (s *Server) changedEventLocked(m *Message, prev map[string]any) event {
	cur := s.wire(m)
	delete(cur, "metadata")
	delete(prev, "metadata")
	ts := s.nextTSLocked()
	inner := map[string]any{"type": "message", "subtype": "message_changed", "hidden": true, "channel": s.opts.Channel,
		"channel_type": s.channelType(), "ts": ts, "event_ts": ts, "message": cur, "previous_message": prev}
	return s.envelopeLocked(inner)
}

// sendAsync delivers ev in the background, as Slack does for events the test
// did not cause directly (the bot's own posts and edits).
func (s *Server) sendAsync(ev event) {
	s.mu.Lock()
	target, socket := s.eventsURL, s.socketMode
	s.mu.Unlock()
	if (target == "" && !socket) || !s.subscribed() {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.deliver(ev, 0)
	}()
}

// deliver sends ev from attempt on, retrying failed attempts after
// RetryDelays, and returns the status of the last attempt.
func (s *Server) deliver(ev event, attempt int) int {
	for {
		status := s.attempt(ev, attempt)
		if status == http.StatusOK || attempt >= len(s.opts.RetryDelays) {
			return status
		}
		t := time.NewTimer(s.opts.RetryDelays[attempt])
		select {
		case <-s.closed:
			t.Stop()
			return status
		case <-t.C:
		}
		attempt++
	}
}

// attempt makes one delivery; retry reasons as Slack names them.
func (s *Server) attempt(ev event, attempt int) int {
	s.mu.Lock()
	target, socket := s.eventsURL, s.socketMode
	prev := ""
	for i := len(s.deliveries) - 1; i >= 0; i-- {
		if d := s.deliveries[i]; d.EventID == ev.id {
			prev = "http_error"
			if d.Status == 0 {
				prev = "http_timeout"
			}
			break
		}
	}
	s.mu.Unlock()
	if prev == "" {
		prev = "http_timeout" // a forced retry: the bridge answered too late
	}
	var (
		status int
		err    error
	)
	if socket {
		if prev == "http_timeout" || prev == "http_error" {
			prev = "timeout" // Socket Mode's reason: not acknowledged in time
		}
		status, err = s.sendEnvelope("events_api", ev.body, attempt, prev)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		status, err = s.post(ctx, target, "application/json", ev.body, attempt, prev)
	}
	d := Delivery{EventID: ev.id, Attempt: attempt, Status: status}
	if err != nil {
		d.Err = err.Error()
	}
	s.mu.Lock()
	s.deliveries = append(s.deliveries, d)
	s.mu.Unlock()
	return status
}

// Posted is a message an agent posted, and the delivery of its event.
type Posted struct {
	TS      string
	EventID string
	Status  int // status of the first delivery attempt (retries follow in the background)
}

var errNoTarget = errors.New("slacktest: no events URL set (SetTargets) and Socket Mode off")

// Reply posts text as user in the thread of parent ts and delivers the
// message event (first attempt synchronously, retries in the background).
func (s *Server) Reply(user, parentTS, text string) (Posted, error) {
	return s.reply(user, parentTS, text, "", nil)
}

// FileSize is the size in bytes the fake gives every file ReplyFile shares.
const FileSize = 48213

// ReplyFile posts a file share with a comment into the thread.
func (s *Server) ReplyFile(user, parentTS, comment, name, permalink string) (Posted, error) {
	f := map[string]any{"id": "F" + strconv.FormatInt(eventSeq.Add(1), 10), "name": name, "title": name,
		"mimetype": "application/octet-stream", "size": FileSize, "permalink": permalink, "url_private": permalink}
	return s.reply(user, parentTS, comment, "file_share", f)
}

func (s *Server) reply(user, parentTS, text, subtype string, f map[string]any) (Posted, error) {
	s.mu.Lock()
	if s.eventsURL == "" && !s.socketMode {
		s.mu.Unlock()
		return Posted{}, errNoTarget
	}
	if _, ok := s.users[user]; !ok {
		s.mu.Unlock()
		return Posted{}, fmt.Errorf("slacktest: unknown user %s (AddUser first)", user)
	}
	p := s.findLocked(parentTS)
	if p == nil || p.ThreadTS != "" {
		s.mu.Unlock()
		return Posted{}, fmt.Errorf("slacktest: no top-level message %s", parentTS)
	}
	m := &Message{TS: s.nextTSLocked(), ThreadTS: parentTS, User: user, Text: text}
	s.messages = append(s.messages, m)
	ev := s.messageEventLocked(m, subtype)
	if f != nil {
		var inner map[string]any
		var env map[string]any
		_ = json.Unmarshal(ev.body, &env)
		inner, _ = env["event"].(map[string]any)
		inner["files"] = []any{f}
		inner["upload"] = false
		ev.body, _ = json.Marshal(env)
		s.bodies[ev.id] = ev.body
	}
	s.mu.Unlock()
	return s.deliverNow(m.TS, ev), nil
}

// deliverNow makes the first attempt now and leaves retries to the background.
func (s *Server) deliverNow(ts string, ev event) Posted {
	if !s.subscribed() {
		return Posted{TS: ts, EventID: ev.id} // Slack sends no event the app did not subscribe to
	}
	status := s.attempt(ev, 0)
	if status != http.StatusOK && len(s.opts.RetryDelays) > 0 {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			t := time.NewTimer(s.opts.RetryDelays[0])
			select {
			case <-s.closed:
				t.Stop()
				return
			case <-t.C:
			}
			s.deliver(ev, 1)
		}()
	}
	return Posted{TS: ts, EventID: ev.id, Status: status}
}

// Edit changes the text of user's message ts and delivers message_changed.
func (s *Server) Edit(user, ts, text string) (Posted, error) {
	s.mu.Lock()
	m := s.findLocked(ts)
	if m == nil || m.User != user || m.Deleted {
		s.mu.Unlock()
		return Posted{}, fmt.Errorf("slacktest: %s has no message %s", user, ts)
	}
	prev := s.wire(m)
	m.Text = text
	m.Edited = s.nextTSLocked()
	ev := s.changedEventLocked(m, prev)
	s.mu.Unlock()
	return s.deliverNow(ts, ev), nil
}

// Delete removes message ts and delivers message_deleted.
func (s *Server) Delete(ts string) (Posted, error) {
	s.mu.Lock()
	m := s.findLocked(ts)
	if m == nil || m.Deleted {
		s.mu.Unlock()
		return Posted{}, fmt.Errorf("slacktest: no message %s", ts)
	}
	prev := s.wire(m)
	m.Deleted = true
	ets := s.nextTSLocked()
	ev := s.envelopeLocked(map[string]any{"type": "message", "subtype": "message_deleted", "hidden": true,
		"channel": s.opts.Channel, "channel_type": s.channelType(), "ts": ets, "event_ts": ets, "deleted_ts": ts, "previous_message": prev})
	s.mu.Unlock()
	return s.deliverNow(ts, ev), nil
}

// Redeliver sends event id again as a Slack retry (X-Slack-Retry-Num), as
// Slack does when the bridge answered too late; it returns the status.
func (s *Server) Redeliver(eventID string, retryNum int) (int, error) {
	// The body is rebuilt from the log of events sent: keep them.
	s.mu.Lock()
	body, ok := s.bodies[eventID]
	s.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("slacktest: event %s was never sent", eventID)
	}
	return s.attempt(event{id: eventID, body: body}, retryNum), nil
}

// Click presses a button of the parent message ts as user and posts the
// block_actions payload to the interactivity URL; it returns the status.
func (s *Server) Click(user, parentTS, actionID string) (int, error) {
	s.mu.Lock()
	p := s.findLocked(parentTS)
	target := s.interactURL
	name, known := s.users[user]
	if p == nil || p.ThreadTS != "" {
		s.mu.Unlock()
		return 0, fmt.Errorf("slacktest: no top-level message %s", parentTS)
	}
	socket := s.socketMode
	if (target == "" && !socket) || !known {
		s.mu.Unlock()
		return 0, fmt.Errorf("slacktest: no interactivity URL, or unknown user %s", user)
	}
	var act map[string]any
	for _, b := range p.Blocks {
		els, _ := b["elements"].([]any)
		for _, e := range els {
			if m, ok := e.(map[string]any); ok && m["action_id"] == actionID {
				act = m
			}
		}
	}
	if act == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("slacktest: message %s has no button %s", parentTS, actionID)
	}
	now := s.opts.Now()
	blockID := ""
	for _, b := range p.Blocks {
		els, _ := b["elements"].([]any)
		for _, e := range els {
			if m, ok := e.(map[string]any); ok && m["action_id"] == actionID {
				blockID, _ = b["block_id"].(string)
			}
		}
	}
	handle := strconvHandle(name)
	payload := map[string]any{
		"type":       "block_actions",
		"user":       map[string]any{"id": user, "username": handle, "name": handle, "team_id": DefaultTeam},
		"api_app_id": DefaultApp,
		"token":      "verification-token-deprecated",
		"container":  map[string]any{"type": "message", "message_ts": p.TS, "channel_id": s.opts.Channel, "is_ephemeral": false},
		"trigger_id": fmt.Sprintf("%d.%d.fake", now.Unix(), eventSeq.Add(1)),
		"team":       map[string]any{"id": DefaultTeam, "domain": "handoff-fake"},
		"enterprise": nil, "is_enterprise_install": false,
		"channel":      map[string]any{"id": s.opts.Channel, "name": "it-support"},
		"message":      s.wire(p),
		"state":        map[string]any{"values": map[string]any{}},
		"response_url": "https://hooks.slack.com/actions/" + DefaultTeam + "/fake/fake",
		"actions": []any{map[string]any{"action_id": actionID, "block_id": blockID, "text": act["text"],
			"value": act["value"], "style": act["style"], "type": "button",
			"action_ts": fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)}},
	}
	s.mu.Unlock()
	raw, _ := json.Marshal(payload)
	if socket {
		return s.sendEnvelope("interactive", raw, 0, "")
	}
	body := []byte(url.Values{"payload": {string(raw)}}.Encode())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return s.post(ctx, target, "application/x-www-form-urlencoded", body, 0, "")
}

func strconvHandle(name string) string {
	out := make([]rune, 0, len(name))
	for _, r := range name {
		switch {
		case r == ' ':
			out = append(out, '.')
		case r >= 'A' && r <= 'Z':
			out = append(out, r+'a'-'A')
		default:
			out = append(out, r)
		}
	}
	return string(out)
}
