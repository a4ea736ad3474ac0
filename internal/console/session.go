package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

const (
	cookieName  = "relayd_console"
	sessionTTL  = 12 * time.Hour
	maxSessions = 1000 // logins kept; the oldest goes first
	csrfField   = "csrf"
	csrfHeader  = "X-CSRF-Token"
)

// session is one browser's: its cookie id and the CSRF token its forms
// carry, derived from the id so that an open console keeps no state.
type session struct {
	id   string
	csrf string
}

type login struct {
	tokenSum [32]byte // the admin token it was made with: a new token ends it
	expires  time.Time
}

type sessions struct {
	now    func() time.Time
	secret [32]byte // keys the CSRF tokens; a restart ends every session anyway

	mu     sync.Mutex
	logins map[string]login
}

func newSessions(now func() time.Time) *sessions {
	s := &sessions{now: now, logins: map[string]login{}}
	_, _ = rand.Read(s.secret[:])
	return s
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *sessions) csrf(id string) string {
	m := hmac.New(sha256.New, s.secret[:])
	m.Write([]byte("csrf\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// loggedIn reports whether id is a live login made with token.
func (s *sessions) loggedIn(id, token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.logins[id]
	if !ok {
		return false
	}
	if s.now().After(l.expires) {
		delete(s.logins, id)
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(l.tokenSum[:], sum[:]) == 1
}

func (s *sessions) add(token string) string {
	id := newID()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, l := range s.logins {
		if now.After(l.expires) {
			delete(s.logins, k)
		}
	}
	for len(s.logins) >= maxSessions {
		var oldest string
		for k, l := range s.logins {
			if oldest == "" || l.expires.Before(s.logins[oldest].expires) {
				oldest = k
			}
		}
		delete(s.logins, oldest)
	}
	s.logins[id] = login{tokenSum: sha256.Sum256([]byte(token)), expires: now.Add(sessionTTL)}
	return id
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	delete(s.logins, id)
	s.mu.Unlock()
}

func validID(id string) bool {
	b, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil && len(b) == 32
}

// session returns the request's session: a live login when an admin token
// is set, any well-formed cookie when none is.
func (c *Console) session(r *http.Request) (*session, bool) {
	ck, err := r.Cookie(cookieName)
	if err != nil || !validID(ck.Value) {
		return nil, false
	}
	if tok := c.o.Token(); tok != "" && !c.sessions.loggedIn(ck.Value, tok) {
		return nil, false
	}
	return &session{id: ck.Value, csrf: c.sessions.csrf(ck.Value)}, true
}

func setCookie(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: id, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// open returns the request's session, making one for an open console.
func (c *Console) open(w http.ResponseWriter, r *http.Request) (*session, bool) {
	if s, ok := c.session(r); ok {
		return s, true
	}
	if c.o.Token() != "" {
		return nil, false
	}
	id := newID()
	setCookie(w, r, id, 0)
	return &session{id: id, csrf: c.sessions.csrf(id)}, true
}

type handler func(w http.ResponseWriter, r *http.Request, s *session)

// page serves a GET page, sending a browser without a session to log in.
func (c *Console) page(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s, ok := c.open(w, r)
		if !ok {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	})
}

// api serves JSON for the page's script.
func (c *Console) api(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		s, ok := c.open(w, r)
		if !ok {
			http.Error(w, "log in first", http.StatusUnauthorized)
			return
		}
		h(w, r, s)
	})
}

// change serves a state-changing POST: it needs a session, a same-origin
// request, and the session's CSRF token in a form field or header.
func (c *Console) change(h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		s, ok := c.session(r)
		if !ok || !sameOrigin(r) {
			c.refuse(w, r, http.StatusForbidden, "This request has no session or comes from another site. Reload the console and try again.")
			return
		}
		got := r.Header.Get(csrfHeader)
		if got == "" {
			got = r.PostFormValue(csrfField)
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
			c.refuse(w, r, http.StatusForbidden, "The CSRF token is missing or wrong. Reload the page and try again.")
			return
		}
		h(w, r, s)
	})
}

// sameOrigin refuses a request that the browser says comes from another
// origin: Sec-Fetch-Site, else an Origin naming another host. With
// Referrer-Policy no-referrer a browser sends "Origin: null" for its own
// forms, so null passes; the CSRF token is the check that cannot be
// forged, this one only turns cross-site requests away early.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if c.o.Token() == "" {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", nil, nil)
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	want := c.o.Token()
	if want == "" {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	if !sameOrigin(r) {
		c.refuse(w, r, http.StatusForbidden, "This login comes from another site.")
		return
	}
	if !c.logins.Allow() {
		c.render(w, r, http.StatusTooManyRequests, "login", nil, map[string]any{"Error": "Too many attempts; wait a few seconds."})
		return
	}
	got := sha256.Sum256([]byte(r.PostFormValue("token")))
	sum := sha256.Sum256([]byte(want))
	if subtle.ConstantTimeCompare(got[:], sum[:]) != 1 {
		c.o.Logger.Warn("console login refused", "remote", r.RemoteAddr)
		c.render(w, r, http.StatusUnauthorized, "login", nil, map[string]any{"Error": "That is not the admin token."})
		return
	}
	if old, err := r.Cookie(cookieName); err == nil {
		c.sessions.remove(old.Value)
	}
	setCookie(w, r, c.sessions.add(want), int(sessionTTL/time.Second))
	c.o.Logger.Info("console login", "remote", r.RemoteAddr)
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.sessions.remove(s.id)
	setCookie(w, r, "", -1)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}
