package fake

import (
	"encoding/json"
	"testing"
)

func clientBody(t testing.TB, id, text string) []byte {
	t.Helper()
	type part struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	type message struct {
		Role  string `json:"role"`
		Parts []part `json:"parts"`
	}
	b, err := json.Marshal(struct {
		ID       string    `json:"id,omitempty"`
		Messages []message `json:"messages"`
	}{id, []message{{"user", []part{{"text", text}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseChatFastTakesWhatClientsSend(t *testing.T) {
	for _, tt := range []struct{ id, text string }{
		{"", "Push to octo/repo"},
		{"chat_1", "line\nbreak \"quoted\" <html> & \\ \t tab"},
		{"c", "日本語 \u2028 \xff \x01"},
	} {
		body := clientBody(t, tt.id, tt.text)
		fast, ok := parseChatFast(body)
		if !ok {
			t.Fatalf("fast path refused %s", body)
		}
		slow, err := parseChatSlow(body)
		if err != nil || fast != slow {
			t.Fatalf("fast %+v, full parser %+v %v", fast, slow, err)
		}
	}
}

func TestParseChatFastLeavesTheRestToTheFullParser(t *testing.T) {
	for _, body := range []string{
		``, `{}`, `{"messages":[]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"   "}]}]}`, // blank: the full parser's error
		`{"messages":[{"role":"assistant","parts":[{"type":"text","text":"x"}]}]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"x"}]}]} `,
		`{ "messages":[{"role":"user","parts":[{"type":"text","text":"x"}]}]}`,
		`{"id":null,"messages":[{"role":"user","parts":[{"type":"text","text":"x"}]}]}`,
		`{"id":"a","id":"b","messages":[{"role":"user","parts":[{"type":"text","text":"x"}]}]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"\ud83d\ude80"}]}]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"a` + "\x01" + `"}]}]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"a` + "\xff" + `"}]}]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"\x"}]}]}`,
		`{"messages":[{"role":"user","parts":[{"type":"text","text":"x"},{"type":"text","text":"y"}]}]}`,
	} {
		if p, ok := parseChatFast([]byte(body)); ok {
			t.Errorf("fast path took %q as %+v", body, p)
		}
	}
}

func FuzzParseChatFast(f *testing.F) {
	f.Add([]byte(`{"id":"c","messages":[{"role":"user","parts":[{"type":"text","text":"a\u00e9\n"}]}]}`))
	f.Add([]byte(`{"messages":[{"role":"user","parts":[{"type":"text","text":"x"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := parseChatFast(body)
		if !ok {
			return
		}
		slow, err := parseChatSlow(body)
		if err != nil || fast != slow {
			t.Fatalf("body %q: fast %+v, full parser %+v %v", body, fast, slow, err)
		}
	})
}

func FuzzParseChatFastTakesClientBodies(f *testing.F) {
	f.Add("", "Push to octo/repo")
	f.Add("chat_1", "<a>\u2028\xff\x00 x")
	f.Fuzz(func(t *testing.T, id, text string) {
		body := clientBody(t, id, text)
		slow, err := parseChatSlow(body)
		fast, ok := parseChatFast(body)
		if err != nil {
			if ok {
				t.Fatalf("body %s: fast path took what the full parser refuses (%v)", body, err)
			}
			return
		}
		if !ok || fast != slow {
			t.Fatalf("body %s: fast %+v ok=%v, full parser %+v", body, fast, ok, slow)
		}
	})
}
