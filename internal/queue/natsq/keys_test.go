package natsq

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPartitionOf(t *testing.T) {
	// Replicas and releases must agree: these values are part of the
	// on-disk layout, so they are pinned.
	for _, c := range []struct {
		route, key string
		n, want    int
	}{
		{"r1", "repo/a", 16, 4},
		{"r1", "repo/b", 16, 13},
		{"r2", "repo/a", 16, 11},
		{"r1", "repo/a", 1, 0},
	} {
		if got := partitionOf(c.route, c.key, c.n); got != c.want {
			t.Errorf("partitionOf(%q, %q, %d) = %d, want %d", c.route, c.key, c.n, got, c.want)
		}
	}
	// The separator keeps ("ab", "c") and ("a", "bc") apart.
	if partitionOf("ab", "c", 1<<30) == partitionOf("a", "bc", 1<<30) {
		t.Error("route and key are not separated in the hash")
	}
}

func TestRouteToken(t *testing.T) {
	for _, c := range []struct{ route, want string }{
		{"ci-failures", "ci-failures"},
		{"ci_failures2", "ci_failures2"},
		{"a.b", "~" + b64.EncodeToString([]byte("a.b"))},
		{"a b", "~" + b64.EncodeToString([]byte("a b"))},
		{"*", "~" + b64.EncodeToString([]byte("*"))},
		{"", "~"},
	} {
		got := routeToken(c.route)
		if got != c.want {
			t.Errorf("routeToken(%q) = %q, want %q", c.route, got, c.want)
		}
		if strings.ContainsAny(got, ". *>\t") {
			t.Errorf("routeToken(%q) = %q is not one subject token", c.route, got)
		}
	}
}

func TestConvSubject(t *testing.T) {
	n := newNames("RELAYD", "relayd")
	a := n.convSubject(3, "r", "octo/repo")
	if !strings.HasPrefix(a, "RELAYD.msgs.3.") || strings.Count(a, ".") != 3 || strings.ContainsAny(a, " *>\t") {
		t.Fatalf("convSubject = %q, want RELAYD.msgs.3.<one token>", a)
	}
	if b := n.convSubject(3, "r", "octo/repo"); b != a {
		t.Fatalf("convSubject not stable: %q, %q", a, b)
	}
	// The route and key are separated: ("ab", "c") is not ("a", "bc").
	if convToken("ab", "c") == convToken("a", "bc") {
		t.Fatal("convToken mixes route and key")
	}
	for subj, want := range map[string]int{a: 3, "RELAYD.msgs.3": 3, "RELAYD.msgs.12.x": 12, "RELAYD.msgs.x": -1,
		"RELAYD.msgs.03.x": -1, "OTHER.msgs.3.x": -1, "RELAYD.dlq.r": -1} {
		p, ok := n.partOfSubject(subj)
		if ok != (want >= 0) || ok && p != want {
			t.Errorf("partOfSubject(%q) = %d, %v; want %d", subj, p, ok, want)
		}
	}
	for _, f := range n.partFilters(3) {
		if f != "RELAYD.msgs.3" && f != "RELAYD.msgs.3.>" {
			t.Fatalf("partFilters(3) has %q", f)
		}
	}
}

func TestConsumerNames(t *testing.T) {
	n := newNames("RELAYD", "relayd")
	for _, c := range []struct {
		name string
		p    int
		ok   bool
	}{
		{"relayd-p0", 0, true},
		{"relayd-p15", 15, true},
		{n.consumerName(7), 7, true},
		{"relayd-p", 0, false},
		{"relayd-p01", 0, false},
		{"relayd-p-1", 0, false},
		{"other-p1", 0, false},
		{"relayd-px", 0, false},
	} {
		p, ok := n.partOfConsumer(c.name)
		if ok != c.ok || (ok && p != c.p) {
			t.Errorf("partOfConsumer(%q) = %d, %v; want %d, %v", c.name, p, ok, c.p, c.ok)
		}
	}
}

func FuzzChatKey(f *testing.F) {
	f.Add("ci-failures", "octo/repo")
	f.Add("", "")
	f.Add("a.b", "c.d.e")
	f.Add("r", "ключ/ü\x00*>")
	f.Fuzz(func(t *testing.T, route, key string) {
		k := chatKey(route, key)
		if !kvKeyValid(k) {
			t.Fatalf("chatKey(%q, %q) = %q is not a valid KV key", route, key, k)
		}
		r, c, err := parseChatKey(k)
		if err != nil || r != route || c != key {
			t.Fatalf("parseChatKey(%q) = %q, %q, %v; want %q, %q", k, r, c, err, route, key)
		}
		for _, k := range []string{attemptsKey(route), dedupeKey(key)} {
			if !kvKeyValid(k) {
				t.Fatalf("%q is not a valid KV key", k)
			}
		}
	})
}

// kvKeyValid mirrors the KV key rule: [-/_=.a-zA-Z0-9]+, no leading or
// trailing dot.
func kvKeyValid(k string) bool {
	if k == "" || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-/_=.", c)) {
			return false
		}
	}
	return true
}

func TestParseChatKeyRejects(t *testing.T) {
	for _, k := range []string{"", "r", "rAA", "xAA.kAA", "rAA.xAA", "r!!.kAA", "rAA.k!!"} {
		if _, _, err := parseChatKey(k); err == nil {
			t.Errorf("parseChatKey(%q) accepted", k)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	var o Options
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Stream != DefaultStream || o.Partitions != DefaultPartitions || o.AckWait != DefaultAckWait ||
		o.Replicas != 1 || o.URLs[0] != "nats://127.0.0.1:4222" || o.Logger == nil || o.Now == nil ||
		o.OwnerTTL != DefaultAckWait || o.Window != DefaultWindow {
		t.Fatalf("defaults %+v", o)
	}
	// OwnerTTL follows AckWait unless set.
	o = Options{AckWait: time.Second}
	if err := o.defaults(); err != nil || o.OwnerTTL != time.Second {
		t.Fatalf("OwnerTTL %v with AckWait 1s (%v)", o.OwnerTTL, err)
	}
	for _, bad := range []Options{{Stream: "A.B"}, {Stream: "A B"}, {ConsumerName: "c*"}} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := tlsConfig(TLS{}); c != nil || err != nil {
		t.Errorf("empty: %v %v, want nil", c, err)
	}
	if c, err := tlsConfig(TLS{InsecureSkipVerify: true}); err != nil || c == nil || !c.InsecureSkipVerify {
		t.Errorf("insecure: %+v %v", c, err)
	}
	for _, bad := range []TLS{
		{CAFile: filepath.Join(dir, "missing.pem")},
		{CAFile: notPEM},
		{CertFile: notPEM, KeyFile: notPEM},
		{CertFile: notPEM},
	} {
		if _, err := tlsConfig(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
