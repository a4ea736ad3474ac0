package prompt

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/samples"
)

// Samples are built by concatenation so that no complete credential-shaped
// string sits in the source for scanners to flag. They have the real
// formats; none of them is a live credential.
var (
	b36     = "1a2B3c4D5e6F7g8H9i0J" + "1k2L3m4N5o6P7q8R"
	ghp     = "ghp_" + b36
	ghPat   = "github_pat_" + "11ABCDEFG0123456789abc" + "_" + "0123456789abcdefghijABCDEFGHIJ0123456789abcdefghijABCDEFGHI"
	glpat   = "glpat-" + "xY9zA8bC7dE6fG5hI4jK"
	slack   = "xoxb-" + "123456789012-1234567890123-" + "AbCdEfGhIjKlMnOpQrStUvWx"
	aws     = "AKIA" + "IOSFODNN7EXAMPLE"
	awsTemp = "ASIA" + "Y34FZKBOKMUTVV7A"
	ckLive  = "ck_live_" + "3f9a8b7c6d5e4f3a2b1c"
	jwt     = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" + "." + "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ" + "." + "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	pemBody = "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\nVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
	pem     = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + pemBody + "-----END RSA " + "PRIVATE KEY-----"
)

func TestRedactBuiltins(t *testing.T) {
	r, err := NewRedactor(RedactOptions{Builtin: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
		n              int
	}{
		// GitHub
		{"github classic in a commit message", "ci: use " + ghp + " for now", "ci: use [REDACTED] for now", 1},
		{"github oauth", "token=gho_" + b36, "token=[REDACTED]", 1},
		{"github user-to-server", "ghu_" + b36 + "\n", "[REDACTED]\n", 1},
		{"github installation in a log line", "##[debug]GITHUB_TOKEN=ghs_" + b36 + " ok", "##[debug]GITHUB_TOKEN=[REDACTED] ok", 1},
		{"github refresh", `"ghr_` + b36 + `"`, `"[REDACTED]"`, 1},
		{"github fine-grained", "export GH=" + ghPat, "export GH=[REDACTED]", 1},
		{"github prefix alone", "the ghp_ prefix marks a classic token", "the ghp_ prefix marks a classic token", 0},
		{"github too short", "ghp_abc123 and gho_" + b36[:20], "ghp_abc123 and gho_" + b36[:20], 0},
		{"commit sha", "merged a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 into main", "merged a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 into main", 0},
		// GitLab
		{"gitlab", "PRIVATE-TOKEN: " + glpat, "PRIVATE-TOKEN: [REDACTED]", 1},
		{"gitlab routable", glpat + ".01.0w1abc2de", "[REDACTED]", 1},
		{"gitlab short", "glpat-abc", "glpat-abc", 0},
		// Slack
		{"slack bot", "SLACK_TOKEN=" + slack, "SLACK_TOKEN=[REDACTED]", 1},
		{"slack user", "xoxp-" + "1234-5678-91011-" + "00e4dd2b1e8a2f", "[REDACTED]", 1},
		{"slack look-alike", "xoxo-hugs-and-kisses", "xoxo-hugs-and-kisses", 0},
		// AWS
		{"aws key id", "aws_access_key_id = " + aws, "aws_access_key_id = [REDACTED]", 1},
		{"aws temporary", "AccessKeyId: " + awsTemp + ",", "AccessKeyId: [REDACTED],", 1},
		{"aws one short", "AKIA" + "IOSFODNN7EXAMPL", "AKIA" + "IOSFODNN7EXAMPL", 0},
		{"aws inside a word", "X" + aws + "Y", "X" + aws + "Y", 0},
		{"asia as a word", "ASIAN markets, ASIA-PACIFIC", "ASIAN markets, ASIA-PACIFIC", 0},
		// Operator
		{"operator key", "OPERATOR_API_KEY=" + ckLive, "OPERATOR_API_KEY=[REDACTED]", 1},
		{"operator prefix alone", "keys start with ck_live_", "keys start with ck_live_", 0},
		// PEM
		{"pem block", "key:\n" + pem + "\nend", "key:\n[REDACTED]\nend", 1},
		{"pem in json", `{"key":"` + strings.ReplaceAll(pem, "\n", `\n`) + `"}`, `{"key":"[REDACTED]"}`, 1},
		{"pem openssh", "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH " + "PRIVATE KEY-----", "[REDACTED]", 1},
		{"pem truncated log", "2024 " + "-----BEGIN " + "PRIVATE KEY-----\n" + pemBody + "[... log truncated]", "2024 [REDACTED][... log truncated]", 1},
		{"pem certificate", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", 0},
		{"pem public key", "-----BEGIN PUBLIC KEY-----\nMIIB", "-----BEGIN PUBLIC KEY-----\nMIIB", 0},
		// JWT
		{"jwt", "id_token=" + jwt + "&state=1", "id_token=[REDACTED]&state=1", 1},
		{"jwt unsigned", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.", 0},
		// Bearer
		{"bearer header", "Authorization: Bearer abcdef0123456789ABCDEF", "Authorization: Bearer [REDACTED]", 1},
		{"bearer lower case", "curl -H 'authorization: bearer abcdef0123456789ABCDEF=='", "curl -H 'authorization: bearer [REDACTED]'", 1},
		{"bearer jwt", "Bearer " + jwt, "Bearer [REDACTED]", 1},
		{"bearer of bad news", "Bearer of bad news; bearer tokens expire", "Bearer of bad news; bearer tokens expire", 0},
		{"bearer in a word", "forbearer abcdef0123456789ABCDEF", "forbearer abcdef0123456789ABCDEF", 0},
		// URL userinfo
		{"url password", "git clone https://deploy:s3cr3t@example.com/repo.git", "git clone https://deploy:[REDACTED]@example.com/repo.git", 1},
		{"url password with @ and :", "DATABASE_URL=postgres://app:p@ss:w0rd@db:5432/app", "DATABASE_URL=postgres://app:[REDACTED]@db:5432/app", 1},
		{"url password without user", "redis://:hunter2@cache:6379/0", "redis://:[REDACTED]@cache:6379/0", 1},
		{"url port, no password", "https://example.com:8443/path?q=a@b", "https://example.com:8443/path?q=a@b", 0},
		{"url user, no password", "ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git", 0},
		{"url in json next to an address", `{"a":"https://h:443","b":"x@y"}`, `{"a":"https://h:443","b":"x@y"}`, 0},
		// Several, and text already redacted.
		{"several", ghp + " " + aws + " " + ckLive, "[REDACTED] [REDACTED] [REDACTED]", 3},
		{"already redacted", "Bearer [REDACTED] https://u:[REDACTED]@h", "Bearer [REDACTED] https://u:[REDACTED]@h", 0},
		{"empty", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := r.Redact(tt.in)
			if got != tt.want || n != tt.n {
				t.Errorf("Redact(%q)\n = %q, %d\nwant %q, %d", tt.in, got, n, tt.want, tt.n)
			}
		})
	}
}

func TestRedactOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     RedactOptions
		in, want string
		n        int
	}{
		{"builtin off", RedactOptions{}, "token " + ghp, "token " + ghp, 0},
		{"builtin off, pattern on", RedactOptions{Patterns: []string{`internal-[0-9]{6}`}}, ghp + " internal-123456", ghp + " [REDACTED]", 1},
		{"both", RedactOptions{Builtin: true, Patterns: []string{`internal-[0-9]{6}`}}, ghp + " internal-123456 internal-654321", "[REDACTED] [REDACTED] [REDACTED]", 3},
		{"groups: only the captured part", RedactOptions{Patterns: []string{`password=(\S+)`}}, "user=a password=hunter2 x", "user=a password=[REDACTED] x", 1},
		{"case-insensitive, no literal prefix", RedactOptions{Patterns: []string{`(?i)secret:\s*(\w+)`}}, "SECRET: abc, Secret:def", "SECRET: [REDACTED], Secret:[REDACTED]", 2},
		{"prefix absent", RedactOptions{Patterns: []string{`tok_[a-z]+`}}, "no tokens here", "no tokens here", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRedactor(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, n := r.Redact(tt.in)
			if got != tt.want || n != tt.n {
				t.Errorf("Redact(%q)\n = %q, %d\nwant %q, %d", tt.in, got, n, tt.want, tt.n)
			}
		})
	}
}

func TestNewRedactorErrors(t *testing.T) {
	tests := []struct {
		pattern string
		want    string
	}{
		{`(unclosed`, "patterns[1]"},
		{`a*`, "matches the empty string"},
		{`x|`, "matches the empty string"},
	}
	for _, tt := range tests {
		_, err := NewRedactor(RedactOptions{Patterns: []string{`ok`, tt.pattern}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewRedactor(%q) = %v, want an error containing %q", tt.pattern, err, tt.want)
		}
	}
	if _, err := CompilePattern(`a*`); !errors.Is(err, ErrEmptyMatch) {
		t.Errorf("CompilePattern(a*) = %v, want ErrEmptyMatch", err)
	}
}

func TestNilRedactor(t *testing.T) {
	var r *Redactor
	if got, n := r.Redact(ghp); got != ghp || n != 0 {
		t.Errorf("nil Redactor changed the text: %q, %d", got, n)
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{"", ghp, pem, jwt, "Bearer " + jwt, "https://u:" + ghp + "@h", aws + aws, "xAKIA" + "IOSFODNN7EXAMPLE", "-----BEGIN " + "PRIVATE KEY-----"} {
		f.Add(s)
	}
	r, err := NewRedactor(RedactOptions{Builtin: true})
	if err != nil {
		f.Fatal(err)
	}
	var refs []*regexp.Regexp
	for name, expr := range Builtins() {
		refs = append(refs, regexp.MustCompile(expr))
		_ = name
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, n := r.Redact(s)
		for _, re := range refs {
			if m := re.FindString(out); m != "" {
				t.Fatalf("Redact(%q) = %q still holds %q (%s)", s, out, m, re)
			}
		}
		if n == 0 && out != s {
			t.Fatalf("no redaction counted but the text changed: %q -> %q", s, out)
		}
		if n > 0 && !strings.Contains(out, Redacted) {
			t.Fatalf("%d redactions counted, none in %q", n, out)
		}
		again, n2 := r.Redact(out)
		if again != out || n2 != 0 {
			t.Fatalf("not idempotent: %q -> %q -> %q (%d)", s, out, again, n2)
		}
	})
}

// turn32K is a realistic turn: real GitHub payloads, as a template that
// dumps the body would render them, up to 32 KiB.
func turn32K(tb testing.TB, secrets bool) string {
	tb.Helper()
	var b strings.Builder
	for b.Len() < 32<<10 {
		for _, ev := range [][2]string{{"push", ""}, {"workflow_run", "completed"}, {"pull_request", "opened"}, {"issues", "opened"}} {
			p, err := samples.GitHub(ev[0], ev[1])
			if err != nil {
				tb.Fatal(err)
			}
			b.WriteString("Event " + ev[0] + ":\n<untrusted>")
			b.Write(p)
			b.WriteString("</untrusted>\n")
			if secrets {
				b.WriteString("log: Authorization: Bearer " + jwt + " clone https://ci:" + ghp + "@github.com/o/r\n")
			}
		}
	}
	return b.String()[:32<<10]
}

func BenchmarkRedact32K(b *testing.B) {
	r, err := NewRedactor(RedactOptions{Builtin: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, secrets := range []bool{false, true} {
		name := "clean"
		if secrets {
			name = "with-secrets"
		}
		text := turn32K(b, secrets)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				r.Redact(text)
			}
		})
	}
}
