package snowtest

import (
	"mime"
	"net/http"
)

// handleToken is POST /oauth_token.do: form-encoded grant_type password,
// client_credentials or refresh_token; JSON answer as in ServiceNow's
// r_RESTOAuthExample; 401 {"error_description":"access_denied",
// "error":"server_error"} for bad client or user credentials.
func (in *Instance) handleToken(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "request must be application/x-www-form-urlencoded"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "malformed form"})
		return
	}
	f := r.PostForm
	denied := func() {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error_description": "access_denied", "error": "server_error"})
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	client, ok := in.clients[f.Get("client_id")]
	if !ok || client.Secret != f.Get("client_secret") {
		denied()
		return
	}
	var user string
	issueRefresh := true
	switch f.Get("grant_type") {
	case "password":
		u, ok := in.users[f.Get("username")]
		if !ok || u.Password != f.Get("password") {
			denied()
			return
		}
		user = u.UserName
	case "client_credentials":
		if client.User == "" {
			denied()
			return
		}
		user, issueRefresh = client.User, false
		if _, ok := in.names[user]; !ok {
			in.names[user] = user
		}
	case "refresh_token":
		u, ok := in.refresh[f.Get("refresh_token")]
		if !ok {
			denied()
			return
		}
		user, issueRefresh = u, false
	default:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type", "error_description": "unsupported grant_type"})
		return
	}
	access := newSysID() + newSysID()
	in.tokens[access] = token{user: user, expiry: in.now().Add(in.opts.TokenTTL)}
	resp := map[string]any{
		"access_token": access,
		"scope":        "useraccount",
		"token_type":   "Bearer",
		"expires_in":   int(in.opts.TokenTTL.Seconds()),
	}
	if issueRefresh {
		rt := newSysID() + newSysID()
		in.refresh[rt] = user
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}
