package teams

import (
	"fmt"
	"net/url"
	"strings"
)

// serviceHosts is the allow-list of Bot Connector hosts: the client sends the
// bot token only there, and the handler refuses activities whose serviceUrl
// points elsewhere (their replies could never be delivered).
type serviceHosts struct {
	hosts        []string // lower-case host names or "*.suffix" patterns
	anonymousDev bool     // loopback hosts only (the Agents Playground)
}

// newServiceHosts joins the allowed (default DefaultServiceURLHosts when nil)
// and extra hosts.
func newServiceHosts(allowed, extra []string, anonymousDev bool) serviceHosts {
	if allowed == nil {
		allowed = DefaultServiceURLHosts
	}
	s := serviceHosts{anonymousDev: anonymousDev}
	for _, h := range append(append([]string{}, allowed...), extra...) {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			s.hosts = append(s.hosts, h)
		}
	}
	return s
}

// check parses a serviceUrl and returns it when it is an https URL (or http
// on a loopback host) whose host is on the list.
func (s serviceHosts) check(serviceURL string) (*url.URL, error) {
	u, err := url.Parse(serviceURL)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("teams: invalid service URL %q", serviceURL)
	}
	host := strings.ToLower(u.Hostname())
	loop := isLoopbackHost(host)
	if !(u.Scheme == "https" || (u.Scheme == "http" && loop)) || !s.allowed(host, loop) {
		return nil, fmt.Errorf("teams: service URL %q is not allowed (host allow-list HANDOFF_TEAMS_ALLOWED_SERVICE_HOSTS, https only except loopback)", serviceURL)
	}
	return u, nil
}

func (s serviceHosts) allowed(host string, loopback bool) bool {
	if s.anonymousDev {
		return loopback
	}
	for _, h := range s.hosts {
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			if strings.HasSuffix(host, "."+suffix) {
				return true
			}
		} else if host == h {
			return true
		}
	}
	return false
}
