package verify

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"time"
)

// basicVerifier checks Authorization: Basic base64(username:password) with
// the configured username and one of the secrets as the password.
type basicVerifier struct {
	user      [sha256.Size]byte
	passwords tokenSet
	first     string
	username  string
}

var _ Verifier = (*basicVerifier)(nil)

func buildBasic(c Spec) (compiled, error) {
	if err := onlyFields(c, "username"); err != nil {
		return nil, err
	}
	return newBasic(c.Username, c.Secrets), nil
}

// newBasic compiles a Basic-auth verifier; secrets are the passwords
// accepted (several, for rotation), at least one (see compile). The config
// loader checks the user name (required, no ':').
func newBasic(username string, secrets []string) *basicVerifier {
	return &basicVerifier{
		user:      sha256.Sum256([]byte(username)),
		passwords: newTokenSet(secrets),
		first:     secrets[0],
		username:  username,
	}
}

func (v *basicVerifier) Headers() []string { return []string{"Authorization"} }

func (v *basicVerifier) Verify(r *Request) (Result, error) {
	val := r.Header.Get("Authorization")
	if val == "" {
		return Result{}, fail(ReasonMissing, "missing Authorization header")
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(val), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return Result{}, fail(ReasonMalformed, "malformed Authorization header: want Basic <credentials>")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return Result{}, fail(ReasonMalformed, "malformed Authorization header: credentials are not base64")
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return Result{}, fail(ReasonMalformed, "malformed Authorization header: credentials are not user:password")
	}
	// Both compared in full whatever the other's outcome, so timing tells
	// nothing about which part was wrong.
	u := sha256.Sum256([]byte(user))
	userOK := subtle.ConstantTimeCompare(u[:], v.user[:])
	passOK := 0
	if v.passwords.match(pass) {
		passOK = 1
	}
	if userOK&passOK != 1 {
		return Result{}, fail(ReasonMismatch, "basic credentials do not match")
	}
	return Result{}, nil
}

func (v *basicVerifier) sign([]byte, time.Time, string) (http.Header, error) {
	h := http.Header{}
	h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(v.username+":"+v.first)))
	return h, nil
}
