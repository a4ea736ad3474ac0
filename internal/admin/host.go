package admin

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/labstack/echo/v4"
)

// HostPolicy decides which Host headers the admin listener answers. It is a
// guard against DNS rebinding: a web page whose name its owner re-points at
// 127.0.0.1 makes the visitor's browser send requests to the admin listener
// as same-origin ones, with the page's own name in Host. Such a Host is
// always a name, never an IP literal, so IP literals are safe to answer.
//
// The check applies when the listener is bound to loopback and no admin
// token is set (nothing else stands between a browser and /admin/*), and
// whenever Hosts is not empty. It then accepts localhost, the names in
// Hosts, and IP literals: on a loopback listener only loopback ones
// (127.0.0.0/8, ::1); on any other listener every one, so probes and
// scrapes by pod IP keep working. A request without Host (HTTP/1.0) is no
// browser's and passes. On a non-loopback listener without Hosts nothing is
// checked: the admin token is the protection there.
type HostPolicy struct {
	Loopback bool     // the listener is bound to a loopback address
	Token    bool     // an admin token is set
	Hosts    []string // server.admin_hosts
	// Listen is the name in the listen address ("relayd.local:9090"), if
	// any: answered too, since the CLI calls the admin API by it, but it
	// does not turn the check on.
	Listen string
}

// Allows reports whether a request with this Host header (host or
// host:port) is answered.
func (p HostPolicy) Allows(hostport string) bool {
	if len(p.Hosts) == 0 && (!p.Loopback || p.Token) {
		return true
	}
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if h == "" {
		return hostport == ""
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if !p.Loopback || ip.Unmap().IsLoopback() {
			return true
		}
	}
	h = strings.TrimSuffix(h, ".")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	if p.Listen != "" && strings.EqualFold(h, strings.TrimSuffix(p.Listen, ".")) {
		return true
	}
	for _, allowed := range p.Hosts {
		allowed = strings.TrimSuffix(allowed, ".")
		if strings.HasPrefix(allowed, "[") && strings.HasSuffix(allowed, "]") {
			allowed = allowed[1 : len(allowed)-1]
		}
		if strings.EqualFold(h, allowed) {
			return true
		}
	}
	return false
}

// checkHost answers 421 to a request whose Host the policy refuses, before
// routing, so such a request learns nothing about the paths served.
func (s *server) checkHost(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.o.Hosts != nil && !s.o.Hosts().Allows(c.Request().Host) {
			return jsonError(c, http.StatusMisdirectedRequest, "misdirected_request",
				"the admin listener does not answer this Host; list the name in server.admin_hosts")
		}
		return next(c)
	}
}
