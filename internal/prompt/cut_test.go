package prompt

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCut(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name string
		text string
		max  int
		want string
		n    int
	}{
		{"fits", "hello", 5, "hello", 0},
		{"empty", "", 0, "", 0},
		{"plain", "0123456789" + long, 40, "0123456789" + long[:10] + "\n[… 290 bytes cut]", 290},
		{"utf-8 boundary", "ééééééééééééééééééé" + long, 40, "éééééééééé\n[… 318 bytes cut]", 318},
		{"fence closed before the marker", "x <untrusted>" + long + "</untrusted> y", 60,
			"x <untrusted>" + long[:15] + "</untrusted>\n[… 299 bytes cut]", 299},
		{"cut inside a closing marker", "<untrusted>" + long[:10] + "</untrusted>" + long, 46,
			"<untrusted>" + long[:3] + "</untrusted>\n[… 319 bytes cut]", 319},
		{"cut inside an opening marker", long[:20] + "<untrusted>" + long, 45,
			long[:20] + "\n[… 311 bytes cut]", 311},
		{"closed fence left alone", "<untrusted>ab</untrusted>" + long, 50,
			"<untrusted>ab</untrusted>" + long[:5] + "\n[… 295 bytes cut]", 295},
		{"nested fences all closed", "<untrusted><untrusted>" + long, 70,
			"<untrusted><untrusted>" + long[:4] + "</untrusted></untrusted>\n[… 296 bytes cut]", 296},
		{"no newline after one", "line one\n" + long[:10] + "\n" + long, 40, "line one\n" + long[:10] + "\n[… 300 bytes cut]", 300},
		{"budget too small for the marker", long, 10, "", 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := Cut(tt.text, tt.max)
			if got != tt.want || n != tt.n {
				t.Errorf("Cut(…, %d)\n = %q, %d\nwant %q, %d", tt.max, got, n, tt.want, tt.n)
			}
			if len(got) > tt.max {
				t.Errorf("len %d > %d", len(got), tt.max)
			}
		})
	}
}

// balanced reports whether the fences in s nest and close, counted as Cut
// counts them.
func balanced(s string) bool {
	depth := 0
	for {
		i := strings.Index(s, "untrusted>")
		if i < 0 {
			return depth == 0
		}
		switch {
		case i >= 2 && s[i-2:i] == "</":
			if depth == 0 {
				return false
			}
			depth--
		case i >= 1 && s[i-1] == '<':
			depth++
		}
		s = s[i+len("untrusted>"):]
	}
}

func FuzzCut(f *testing.F) {
	f.Add("<untrusted>hello</untrusted> and more text after the fence", 40)
	f.Add("héllo <untrusted>wörld "+strings.Repeat("ü", 50)+"</untrusted>", 48)
	f.Add("<untrusted><untrusted>x</untrusted></untrusted>"+strings.Repeat("y", 40), 44)
	f.Add("plain", 3)
	f.Fuzz(func(t *testing.T, text string, max int) {
		max = max % 4096
		if max < 0 {
			max = -max
		}
		got, n := Cut(text, max)
		if len(text) <= max {
			if got != text || n != 0 {
				t.Fatalf("Cut of a text that fits changed it: %q -> %q", text, got)
			}
			return
		}
		if len(got) > max {
			t.Fatalf("Cut(%q, %d) = %q: %d bytes", text, max, got, len(got))
		}
		if n <= 0 || n > len(text) {
			t.Fatalf("Cut(%q, %d) reports %d bytes cut", text, max, n)
		}
		if got != "" && !strings.HasSuffix(got, marker(n)) {
			t.Fatalf("Cut(%q, %d) = %q: no marker for %d", text, max, got, n)
		}
		if utf8.ValidString(text) && !utf8.ValidString(got) {
			t.Fatalf("Cut(%q, %d) = %q: invalid UTF-8", text, max, got)
		}
		if balanced(text) && !balanced(got) {
			t.Fatalf("Cut(%q, %d) = %q: fences unbalanced", text, max, got)
		}
	})
}

// A turn as the dispatcher prepares it: redacted, then cut. The credential
// is gone whole (not half cut and left unrecognisable) and the fence the
// cut lands in is closed.
func TestRedactThenCut(t *testing.T) {
	r, err := NewRedactor(RedactOptions{Builtin: true})
	if err != nil {
		t.Fatal(err)
	}
	turn := "Build failed on main.\n<untrusted>" + strings.Repeat("step ok\n", 20) +
		"export TOKEN=" + ghp + "\n" + strings.Repeat("step ok\n", 40) + "</untrusted>\nFind the cause."
	text, n := r.Redact(turn)
	if n != 1 || strings.Contains(text, "ghp_") {
		t.Fatalf("Redact: %d redactions, %q", n, text)
	}
	out, cut := Cut(text, 256)
	if cut == 0 || len(out) > 256 {
		t.Fatalf("Cut: %d bytes cut, %d long", cut, len(out))
	}
	if !strings.Contains(out, "export TOKEN=[REDACTED]\n") {
		t.Errorf("the redacted line did not survive the cut: %q", out)
	}
	if !balanced(out) || !strings.HasSuffix(out, "</untrusted>\n"+marker(cut)) {
		t.Errorf("fence not closed before the marker: %q", out)
	}
}
