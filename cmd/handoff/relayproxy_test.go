package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2/clientcredentials"
)

// runBareProxy is BenchmarkRelay's baseline: the same two hops as the bridge,
// with nothing in between. It verifies no signature, stores nothing, keeps no
// order and retries nothing; it maps a desk chat to its Teams conversation
// from a routes file (PROXY_ROUTES: {group: {conv, user, tenant}}) and
// forwards:
//
//	POST /webhooks/servicenow (a Business Rule payload) → POST {connector}v3/conversations/{conv}/activities
//	POST /api/messages (a Teams activity)              → POST {servicenow}/api/now/connect/conversations/{group}/messages
//
// It runs when this test binary is started with HANDOFF_TEST_AS_PROXY=1.
func runBareProxy() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := bareProxy(log); err != nil {
		log.Error("proxy failed", "err", err)
		os.Exit(1)
	}
}

type proxyRoute struct {
	Conv   string `json:"conv"`
	User   string `json:"user"`
	Tenant string `json:"tenant"`
}

func bareProxy(log *slog.Logger) error {
	raw, err := os.ReadFile(os.Getenv("PROXY_ROUTES"))
	if err != nil {
		return err
	}
	routes := map[string]proxyRoute{}
	if err := json.Unmarshal(raw, &routes); err != nil {
		return err
	}
	groups := map[string]string{}
	for g, r := range routes {
		groups[r.Conv] = g
	}
	cc := clientcredentials.Config{ClientID: os.Getenv("PROXY_APP_ID"), ClientSecret: os.Getenv("PROXY_APP_PASSWORD"),
		TokenURL: os.Getenv("PROXY_TOKEN_URL"), Scopes: []string{"https://api.botframework.com/.default"}}
	tokens := cc.TokenSource(context.Background())
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	connector := strings.TrimSuffix(os.Getenv("PROXY_CONNECTOR"), "/")
	sn := os.Getenv("PROXY_SERVICENOW")

	forward := func(w http.ResponseWriter, req *http.Request) {
		resp, err := hc.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			http.Error(w, resp.Status, http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhooks/servicenow", func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			Group   string `json:"group"`
			Message string `json:"message"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rt, ok := routes[m.Group]
		if !ok {
			w.WriteHeader(http.StatusOK) // not a bench chat
			return
		}
		tok, err := tokens.Token()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		body, _ := json.Marshal(map[string]any{
			"type": "message", "text": m.Message,
			"from":         map[string]string{"id": "28:" + cc.ClientID},
			"recipient":    map[string]string{"id": rt.User},
			"conversation": map[string]string{"id": rt.Conv, "conversationType": "personal", "tenantId": rt.Tenant},
		})
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost,
			connector+"/v3/conversations/"+url.PathEscape(rt.Conv)+"/activities", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		forward(w, req)
	})
	mux.HandleFunc("POST /api/messages", func(w http.ResponseWriter, r *http.Request) {
		var a struct {
			Text         string `json:"text"`
			Conversation struct {
				ID string `json:"id"`
			} `json:"conversation"`
		}
		if err := json.NewDecoder(r.Body).Decode(&a); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g, ok := groups[a.Conversation.ID]
		if !ok {
			http.Error(w, "unknown conversation", http.StatusNotFound)
			return
		}
		body, _ := json.Marshal(map[string]string{"message": a.Text})
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost,
			sn+"/api/now/connect/conversations/"+url.PathEscape(g)+"/messages", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.SetBasicAuth(os.Getenv("PROXY_SN_USER"), os.Getenv("PROXY_SN_PASSWORD"))
		forward(w, req)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	log.Info("listening", "addr", ln.Addr().String())
	return fmt.Errorf("serve: %w", http.Serve(ln, mux))
}
