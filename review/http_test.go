package review

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

const testToken = "s3cret-token"

func TestHandler(t *testing.T) {
	exp := testExporter(t, ExportConfig{})
	tests := []struct {
		name       string
		method     string
		auth       string // Authorization header
		query      string
		src        Source
		token      string
		wantStatus int
		wantBody   string // substring
		wantHeader map[string]string
	}{
		{name: "no token", query: "last=7d", wantStatus: 401,
			wantHeader: map[string]string{"WWW-Authenticate": `Bearer realm="handoff review"`}},
		{name: "wrong token", auth: "Bearer nope", query: "last=7d", wantStatus: 401,
			wantHeader: map[string]string{"WWW-Authenticate": `Bearer realm="handoff review", error="invalid_token"`}},
		{name: "token prefix", auth: "Bearer " + testToken[:5], query: "last=7d", wantStatus: 401},
		{name: "basic auth", auth: "Basic " + testToken, query: "last=7d", wantStatus: 401},
		{name: "token in query is not accepted", query: "last=7d&token=" + testToken, wantStatus: 401},
		{name: "no token configured refuses all", token: "-", auth: "Bearer ", query: "last=7d", wantStatus: 401},
		{name: "no token configured, any bearer", token: "-", auth: "Bearer x", query: "last=7d", wantStatus: 401},
		{name: "POST", method: http.MethodPost, auth: "Bearer " + testToken, query: "last=7d", wantStatus: 405,
			wantHeader: map[string]string{"Allow": "GET, HEAD"}},
		{name: "bad format", auth: "Bearer " + testToken, query: "last=7d&format=xml", wantStatus: 400, wantBody: `unknown export format "xml"`},
		{name: "bad from", auth: "Bearer " + testToken, query: "from=16.11.2026", wantStatus: 400, wantBody: `bad from "16.11.2026"`},
		{name: "no range", auth: "Bearer " + testToken, query: "format=csv", wantStatus: 400, wantBody: "from is required"},
		{name: "last and from", auth: "Bearer " + testToken, query: "last=7d&from=2026-11-09", wantStatus: 400, wantBody: "not both"},
		{name: "bad last", auth: "Bearer " + testToken, query: "last=7x", wantStatus: 400, wantBody: `bad last "7x"`},
		{name: "from after to", auth: "Bearer " + testToken, query: "from=2026-11-16&to=2026-11-09", wantStatus: 400, wantBody: "must be before"},
		{name: "source fails", auth: "Bearer " + testToken, query: "last=7d", src: &memSource{err: errors.New("db down")},
			wantStatus: 500, wantBody: "export failed"},
		{name: "HEAD", method: http.MethodHead, auth: "Bearer " + testToken, query: "last=7d&format=html", wantStatus: 200,
			wantHeader: map[string]string{"Content-Type": "text/html; charset=utf-8"}},
		{name: "scheme is case-insensitive", auth: "bearer " + testToken, query: "from=2026-11-09&to=2026-11-15", wantStatus: 200,
			wantHeader: map[string]string{
				"Content-Type":        "text/csv; charset=utf-8",
				"Content-Disposition": `attachment; filename=handoffs-2026-11-09_2026-11-15.csv`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if src == nil {
				src = &memSource{records: fixtureRecords()}
			}
			token := testToken
			if tt.token == "-" {
				token = ""
			}
			h := Handler(src, token, exp, nil)
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, "/review/export?"+tt.query, nil)
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %q", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q lacks %q", rec.Body.String(), tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.wantStatus != 200 && rec.Header().Get("Content-Disposition") != "" {
				t.Error("an error response carries a Content-Disposition")
			}
		})
	}
}

func TestHandlerFormats(t *testing.T) {
	exp := testExporter(t, ExportConfig{})
	src := &memSource{records: fixtureRecords()}
	srv := httptest.NewServer(Handler(src, testToken, exp, nil))
	defer srv.Close()
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/review/export?from=2026-11-09&to=2026-11-15&format="+string(f), nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != f.ContentType() {
				t.Errorf("Content-Type = %q, want %q", ct, f.ContentType())
			}
			wantCD := "attachment; filename=handoffs-2026-11-09_2026-11-15" + f.Ext()
			if cd := resp.Header.Get("Content-Disposition"); cd != wantCD {
				t.Errorf("Content-Disposition = %q, want %q", cd, wantCD)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Error("Cache-Control is not no-store")
			}
			want, _ := export(t, exp, src, weekFrom, weekTo, f)
			if !bytes.Equal(body, want) {
				t.Errorf("body differs from Export's output")
			}
		})
	}
}

func TestHandlerLast(t *testing.T) {
	// last=7d on the fixed clock (Monday 06:00) covers Mon 06:00 .. Mon 06:00:
	// s-001 (Mon 08:15) to s-006 (the next Monday 00:00).
	exp := testExporter(t, ExportConfig{})
	var gotFrom, gotTo time.Time
	src := sourceFunc(func(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
		gotFrom, gotTo = from, to
		return nil
	})
	req := httptest.NewRequest(http.MethodGet, "/review/export?last=7d&format=jsonl", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	Handler(src, testToken, exp, nil).ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if !gotFrom.Equal(testNow.AddDate(0, 0, -7)) || !gotTo.Equal(testNow) {
		t.Errorf("range = %v .. %v", gotFrom, gotTo)
	}
	if cd := rec.Header().Get("Content-Disposition"); cd != "attachment; filename=handoffs-20261109T060000Z_20261116T060000Z.jsonl" {
		t.Errorf("Content-Disposition = %q", cd)
	}
}

func TestHandlerAbortsMidStream(t *testing.T) {
	// A failure after the body started must not look like a complete file.
	src := sourceFunc(func(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
		for i := range 500 {
			if err := fn(genRecord(i, from)); err != nil {
				return err
			}
		}
		return errors.New("connection reset")
	})
	srv := httptest.NewServer(Handler(src, testToken, testExporter(t, ExportConfig{}), nil))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/review/export?last=7d&format=jsonl", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		return // aborted before the headers: fine
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the body ended cleanly although the export failed")
	}
}

type sourceFunc func(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error

func (f sourceFunc) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	return f(ctx, from, to, fn)
}
