package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SecretText is what a non-empty secret prints and marshals as. An empty
// secret stays empty, so a dump still shows which are unset.
const SecretText = "<secret>"

// Secret is a string that never shows itself: fmt (every verb), slog, JSON
// and YAML all see SecretText. Its value is string(s), for the code that
// uses it. Being a type, a new secret field is safe without anyone
// remembering to redact it.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return SecretText
}

// GoString is for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format implements fmt.Formatter, so no verb or flag prints the value.
func (s Secret) Format(f fmt.State, verb rune) { formatMasked(f, verb, s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// SecretList is a list of secrets (a source's verify secrets). Like Secret,
// it prints and marshals each element as SecretText (empty ones stay
// empty); the elements, read one by one, are the values.
type SecretList []string

func (l SecretList) masked() []string {
	if l == nil {
		return nil
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = Secret(s).String()
	}
	return out
}

func (l SecretList) String() string { return fmt.Sprint(l.masked()) }

// GoString is for %#v.
func (l SecretList) GoString() string { return fmt.Sprintf("%#v", l.masked()) }

// Format implements fmt.Formatter, so no verb or flag prints a value.
func (l SecretList) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(l.GoString()))
	case verb == 'q':
		fmt.Fprintf(f, "%q", l.masked())
	default:
		_, _ = f.Write([]byte(l.String()))
	}
}

// LogValue implements slog.LogValuer.
func (l SecretList) LogValue() slog.Value { return slog.AnyValue(l.masked()) }

// MarshalJSON implements json.Marshaler.
func (l SecretList) MarshalJSON() ([]byte, error) { return json.Marshal(l.masked()) }

// MarshalYAML implements yaml.Marshaler.
func (l SecretList) MarshalYAML() (any, error) { return l.masked(), nil }

func formatMasked(f fmt.State, verb rune, masked string) {
	switch {
	case verb == 'v' && f.Flag('#'), verb == 'q':
		_, _ = f.Write([]byte(strconv.Quote(masked)))
	default:
		_, _ = f.Write([]byte(masked))
	}
}

var secretTypes = map[reflect.Type]bool{
	reflect.TypeFor[Secret]():     true,
	reflect.TypeFor[SecretList](): true,
}

func isSecretType(t reflect.Type) bool { return secretTypes[t] }

// dumped is Config without its methods: what a dump encodes.
type dumped Config

// dump returns a copy of c for showing: credentials inside URLs are
// hidden (secrets hide themselves).
func (c Config) dump() dumped {
	c.Operator.BaseURL = redactURL(c.Operator.BaseURL)
	n := &c.Storage.NATS
	if n.URL != "" {
		parts := strings.Split(n.URL, ",")
		for i, p := range parts {
			parts[i] = redactURL(strings.TrimSpace(p))
		}
		n.URL = strings.Join(parts, ",")
	}
	if n.URLs != nil {
		urls := make([]string, len(n.URLs))
		for i, u := range n.URLs {
			urls[i] = redactURL(u)
		}
		n.URLs = urls
	}
	return dumped(c)
}

// Format implements fmt.Formatter: a Config prints as its dump does, with
// the credentials inside URLs hidden too.
func (c Config) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.dump())
}

// MarshalYAML writes the config as relay.yaml's keys, with secrets and the
// credentials inside URLs hidden.
func (c Config) MarshalYAML() (any, error) { return c.dump(), nil }

// MarshalJSON writes the config with relay.yaml's keys, in the file's
// order, with secrets and the credentials inside URLs hidden: what
// GET /admin/config serves.
func (c Config) MarshalJSON() ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c.dump()); err != nil {
		return nil, fmt.Errorf("dump config: %w", err)
	}
	var b bytes.Buffer
	if err := nodeJSON(&b, &n); err != nil {
		return nil, fmt.Errorf("dump config: %w", err)
	}
	return b.Bytes(), nil
}

// nodeJSON writes a YAML node tree, as the encoder made it, as JSON,
// keeping the order of keys.
func nodeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			b.WriteString("null")
			return nil
		}
		return nodeJSON(b, n.Content[0])
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, n.Content[i].Value)
			b.WriteByte(':')
			if err := nodeJSON(b, n.Content[i+1]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, e := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := nodeJSON(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			b.WriteString("null")
			return nil
		case "!!bool", "!!int", "!!float":
			if v := []byte(n.Value); json.Valid(v) {
				b.Write(v)
				return nil
			}
		}
		writeJSONString(b, n.Value)
	default:
		return fmt.Errorf("unexpected YAML node kind %d", n.Kind)
	}
	return nil
}

// plainVerify is Verify without its methods.
type plainVerify Verify

// Format implements fmt.Formatter. A *Verify inside a struct printed with a
// verb pointers do not take (%s, %q) would otherwise be printed by fmt's
// error path, which calls no Format method: the secrets would show.
func (v Verify) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), plainVerify(v))
}

// writeJSONString writes s as a JSON string, leaving <, > and & as they
// are: "<secret>" reads as itself.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // a string always encodes
	b.Truncate(b.Len() - 1) // Encode's newline
}
