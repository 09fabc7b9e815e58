package review

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Handler serves the export endpoint, to be mounted as
// "GET /review/export":
//
//	GET /review/export?from=2026-11-09&to=2026-11-15&format=csv
//	GET /review/export?last=7d&format=html
//	Authorization: Bearer <token>
//
// from, to and last are read by ParseRange, dates in the exporter's location;
// format is csv (the default), jsonl, nlu or html (see ParseFormat). The
// response streams with the format's Content-Type and a Content-Disposition
// attachment named like handoffs-2026-11-09_2026-11-15.csv.
//
// Answers: 401 with WWW-Authenticate when the bearer token is missing or wrong
// (compared in constant time; an empty configured token refuses everyone), 405
// for methods other than GET and HEAD, 400 naming the bad parameter, 500 if the
// source fails before anything was written. A failure after the body started
// aborts the connection, so a client never takes a truncated file for a whole
// one. exp nil means an Exporter with the default configuration.
func Handler(src Source, token string, exp *Exporter, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if exp == nil {
		exp = defaultExporter
	}
	if token == "" {
		logger.Error("review: export endpoint has no token configured; every request is refused")
	}
	return &exportHandler{src: src, token: sha256.Sum256([]byte(token)), hasToken: token != "", exp: exp, logger: logger}
}

type exportHandler struct {
	src      Source
	token    [sha256.Size]byte
	hasToken bool
	exp      *Exporter
	logger   *slog.Logger
}

const authRealm = `Bearer realm="handoff review"`

func (h *exportHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch got, ok := bearer(r); {
	case !ok:
		w.Header().Set("WWW-Authenticate", authRealm)
		http.Error(w, "unauthorized: send Authorization: Bearer <token>", http.StatusUnauthorized)
		return
	case !h.authorized(got):
		w.Header().Set("WWW-Authenticate", authRealm+`, error="invalid_token"`)
		http.Error(w, "unauthorized: invalid token", http.StatusUnauthorized)
		h.logger.Warn("review: export refused: invalid token", "remote_addr", r.RemoteAddr)
		return
	}

	q := r.URL.Query()
	format := FormatCSV
	if s := q.Get("format"); s != "" {
		f, err := ParseFormat(s)
		if err != nil {
			badRequest(w, err)
			return
		}
		format = f
	}
	from, to, err := ParseRange(q.Get("from"), q.Get("to"), q.Get("last"), h.exp.now().In(h.exp.loc))
	if err != nil {
		badRequest(w, err)
		return
	}

	hdr := w.Header()
	hdr.Set("Content-Type", format.ContentType())
	hdr.Set("Content-Disposition", mime.FormatMediaType("attachment",
		map[string]string{"filename": "handoffs-" + rangeName(from.In(h.exp.loc), to.In(h.exp.loc)) + format.Ext()}))
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	if format == FormatHTML {
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}

	start := time.Now()
	cw := &countingWriter{w: w}
	n, err := h.exp.Export(r.Context(), cw, h.src, from, to, format)
	attrs := []any{"format", string(format), "from", from, "to", to, "records", n, "bytes", cw.n, "elapsed", time.Since(start)}
	if err != nil {
		h.logger.Error("review: export failed", append(attrs, "err", err)...)
		if cw.n > 0 {
			panic(http.ErrAbortHandler) // headers are gone: cut the stream
		}
		hdr.Del("Content-Disposition")
		status := http.StatusInternalServerError
		if errors.Is(err, r.Context().Err()) && r.Context().Err() != nil {
			status = http.StatusServiceUnavailable
		}
		http.Error(w, "export failed", status)
		return
	}
	h.logger.Info("review: export served", attrs...)
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	return tok, true
}

// authorized compares hashes so that the comparison takes the same time
// whatever the token's length and content.
func (h *exportHandler) authorized(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1 && h.hasToken
}

func badRequest(w http.ResponseWriter, err error) {
	http.Error(w, "bad request: "+strings.TrimPrefix(err.Error(), "review: "), http.StatusBadRequest)
}

// rangeName names a range for a file: "2026-11-09_2026-11-15" (the end date
// inclusive) when both ends are midnights, compact UTC times otherwise.
func rangeName(from, to time.Time) string {
	midnight := func(t time.Time) bool {
		return t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0
	}
	if midnight(from) && midnight(to) {
		last := to.AddDate(0, 0, -1)
		if !last.After(from) {
			return from.Format(dateLayout)
		}
		return from.Format(dateLayout) + "_" + last.Format(dateLayout)
	}
	const compact = "20060102T150405Z"
	return from.UTC().Format(compact) + "_" + to.UTC().Format(compact)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
