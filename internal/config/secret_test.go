package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// field is one field of Config found by reflection: its YAML path, with
// list items at [0], and its type.
type field struct {
	path string
	typ  reflect.Type
}

// leaves lists every value field reachable from t: Secrets, Durations and
// plain values; structs are descended into.
func leaves(t reflect.Type, path string) []field {
	var out []field
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		p := join(path, name)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case isSecretType(ft) || isUnmarshaler(ft):
			out = append(out, field{p, ft})
		case ft.Kind() == reflect.Struct:
			out = append(out, leaves(ft, p)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, leaves(ft.Elem(), p+"[0]")...)
		default:
			out = append(out, field{p, ft})
		}
	}
	return out
}

func secretFields(t *testing.T) []field {
	t.Helper()
	var out []field
	for _, f := range leaves(reflect.TypeFor[Config](), "") {
		if isSecretType(f.typ) {
			out = append(out, f)
		}
	}
	// The enumeration must see at least the secrets known today.
	for _, want := range []string{"server.admin_token", "operator.api_key", "sources[0].verify.secrets"} {
		if !slicesContainsPath(out, want) {
			t.Fatalf("secret fields %v lack %s", out, want)
		}
	}
	return out
}

func slicesContainsPath(fs []field, p string) bool {
	for _, f := range fs {
		if f.path == p {
			return true
		}
	}
	return false
}

// A field whose name says it holds a credential must have a secret type;
// a new one with a plain string type fails here.
func TestCredentialFieldsAreSecrets(t *testing.T) {
	credential := regexp.MustCompile(`token|secret|key|password|passwd|credential|bearer|auth`)
	notSecret := map[string]bool{
		"timestamp_key": true, "signature_key": true, // names of parts of a header
	}
	for _, f := range leaves(reflect.TypeFor[Config](), "") {
		name := last(f.path)
		if i := strings.LastIndexByte(name, ']'); i >= 0 {
			name = name[i+1:]
		}
		isString := f.typ.Kind() == reflect.String || f.typ.Kind() == reflect.Slice && f.typ.Elem().Kind() == reflect.String
		if !isString || !credential.MatchString(name) || strings.HasSuffix(name, "_file") || notSecret[name] {
			continue
		}
		if !isSecretType(f.typ) {
			t.Errorf("%s is a %s: make it a Secret (or SecretList) so that no dump or error shows it", f.path, f.typ)
		}
	}
}

// fillSecrets sets every Secret and SecretList field reachable from v to
// marker values, allocating what it passes through, and returns the
// markers and every value on the way (to print each of them).
func fillSecrets(v reflect.Value, path string, marks *[]string, values *[]reflect.Value) {
	for i := range v.NumField() {
		f := v.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		p := join(path, name)
		fv := v.Field(i)
		mark := "leak" + strings.NewReplacer(".", "-", "[", "-", "]", "").Replace(p) + "X"
		switch {
		case fv.Type() == reflect.TypeFor[Secret]():
			fv.SetString(mark)
			*marks = append(*marks, mark)
			*values = append(*values, fv)
		case fv.Type() == reflect.TypeFor[SecretList]():
			fv.Set(reflect.ValueOf(SecretList{mark + "0", mark + "1", ""}))
			*marks = append(*marks, mark+"0", mark+"1")
			*values = append(*values, fv)
		case fv.Kind() == reflect.Pointer && fv.Type().Elem().Kind() == reflect.Struct:
			fv.Set(reflect.New(fv.Type().Elem()))
			*values = append(*values, fv, fv.Elem())
			fillSecrets(fv.Elem(), p, marks, values)
		case fv.Kind() == reflect.Struct:
			*values = append(*values, fv)
			fillSecrets(fv, p, marks, values)
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			fv.Set(reflect.MakeSlice(fv.Type(), 1, 1))
			*values = append(*values, fv, fv.Index(0))
			fillSecrets(fv.Index(0), p+"[0]", marks, values)
		}
	}
}

// Every secret field, found by reflection, shows as <secret> through
// every fmt verb, slog, JSON and YAML, at every level of the config.
func TestSecretsNeverShow(t *testing.T) {
	secretFields(t)
	var c Config
	var marks []string
	values := []reflect.Value{reflect.ValueOf(c)}
	fillSecrets(reflect.ValueOf(&c).Elem(), "", &marks, &values)
	values = append(values, reflect.ValueOf(c), reflect.ValueOf(&c))

	outputs := map[string]string{}
	for i, v := range values {
		x := v.Interface()
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%10.3s", "%T %[1]v"} {
			outputs[fmt.Sprintf("%d fmt %s %T", i, verb, x)] = fmt.Sprintf(verb, x)
		}
		outputs[fmt.Sprintf("%d Sprint %T", i, x)] = fmt.Sprint(x)
		j, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("json %T: %v", x, err)
		}
		outputs[fmt.Sprintf("%d json %T", i, x)] = string(j)
		y, err := yaml.Marshal(x)
		if err != nil {
			t.Fatalf("yaml %T: %v", x, err)
		}
		outputs[fmt.Sprintf("%d yaml %T", i, x)] = string(y)
		var jb, tb bytes.Buffer
		slog.New(slog.NewJSONHandler(&jb, nil)).Info("m", "v", x)
		slog.New(slog.NewTextHandler(&tb, nil)).Info("m", "v", x)
		outputs[fmt.Sprintf("%d slog json %T", i, x)] = jb.String()
		outputs[fmt.Sprintf("%d slog text %T", i, x)] = tb.String()
	}
	for name, out := range outputs {
		if strings.Contains(out, "leak") {
			t.Errorf("%s shows a secret: %s", name, out)
		}
	}
	// They are still there for the code that uses them.
	if string(c.Operator.APIKey) != "leakoperator-api_keyX" || c.Sources[0].Verify.Secrets[1] != "leaksources-0-verify-secretsX1" {
		t.Errorf("values changed: %q %q", string(c.Operator.APIKey), []string(c.Sources[0].Verify.Secrets))
	}
	if got := fmt.Sprintf("%v|%q|%#v", c.Sources[0].Verify.Secrets, c.Sources[0].Verify.Secrets, Secret("")); got != `[<secret> <secret> ]|["<secret>" "<secret>" ""]|""` {
		t.Errorf("masked forms = %s", got)
	}
}

// GET /admin/config's dump: relay.yaml's key names in the file's order,
// secrets as <secret>, unset ones empty, credentials inside URLs hidden.
func TestDump(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "lines", "file-secret\n")
	c, err := Parse([]byte(`
storage:
  backend: nats
  nats: {url: "nats://user:nats-pass@a:4222,nats://nats-token@b:4222", stream: S}
operator:
  api_key: ${KEY}
  base_url: https://operator.io/v1
sources:
  - {name: gh, path: /gh, verify: {type: github, secrets: [gh-secret-1, gh-secret-2]}}
  - {name: f, path: /f, verify: {type: bearer, secrets_file: lines}, allow_cidrs: [10.0.0.0/8]}
  - {name: n, path: /n, verify: {type: none}}
routes:
  - {name: r, source: gh, template: t, rate_limit: {per_second: 1}, conversation_reset: {messages: 3}}
`), dir, env(map[string]string{"KEY": "op-secret-key"}))
	if err != nil {
		t.Fatal(err)
	}
	c2 := *c
	c2.Storage.NATS.URL = ""
	c2.Storage.NATS.URLs = []string{"nats://user:nats-pass2@c:4222"}
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := json.Marshal(&c2)
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"op-secret-key", "gh-secret-1", "gh-secret-2", "file-secret", "nats-pass", "nats-token"}
	for _, out := range []string{string(raw), string(raw2), string(y)} {
		for _, s := range append(secrets, "BaseURL", "APIKey", "AdminToken") {
			if strings.Contains(out, s) {
				t.Errorf("dump shows %q:\n%s", s, out)
			}
		}
	}
	// Printing a loaded config (which also carries what its errors must
	// hide) shows no secret either, with any verb.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		for _, out := range []string{fmt.Sprintf(verb, c), fmt.Sprintf(verb, *c), fmt.Sprintf(verb, c.Sources)} {
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("%s shows %q:\n%s", verb, s, out)
				}
			}
		}
	}
	if !strings.HasPrefix(string(raw), `{"server":{"listen":":8080","admin_listen":"127.0.0.1:9090","max_body_bytes":1048576,`) {
		t.Errorf("dump does not start with server.listen in the file's order: %.120s", raw)
	}
	var m struct {
		Server struct {
			AdminToken  *string `json:"admin_token"`
			TrustProxy  *bool   `json:"trust_proxy"`
			IdleTimeout string  `json:"idle_timeout"`
		} `json:"server"`
		Storage struct {
			NATS struct {
				URL string `json:"url"`
			} `json:"nats"`
		} `json:"storage"`
		Operator struct {
			BaseURL   string             `json:"base_url"`
			APIKey    string             `json:"api_key"`
			RateLimit map[string]float64 `json:"rate_limit"`
		} `json:"operator"`
		Sources []struct {
			Verify struct {
				Secrets []string `json:"secrets"`
			} `json:"verify"`
		} `json:"sources"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("dump is not the config's shape: %v\n%s", err, raw)
	}
	switch {
	case m.Server.AdminToken == nil || *m.Server.AdminToken != "":
		t.Errorf("unset admin_token = %v, want empty", m.Server.AdminToken)
	case m.Server.TrustProxy == nil || *m.Server.TrustProxy:
		t.Error("trust_proxy is not false")
	case m.Server.IdleTimeout != "2m0s":
		t.Errorf("idle_timeout = %q", m.Server.IdleTimeout)
	case m.Operator.APIKey != SecretText || m.Operator.BaseURL != "https://operator.io/v1":
		t.Errorf("operator = %+v", m.Operator)
	case m.Operator.RateLimit["per_second"] != 2 || m.Operator.RateLimit["burst"] != 5:
		t.Errorf("rate_limit = %v", m.Operator.RateLimit)
	case m.Storage.NATS.URL != "nats://user:<secret>@a:4222,nats://<secret>@b:4222":
		t.Errorf("nats url = %q", m.Storage.NATS.URL)
	case len(m.Sources) != 3 || !reflectEqual(m.Sources[0].Verify.Secrets, []string{SecretText, SecretText}) ||
		!reflectEqual(m.Sources[1].Verify.Secrets, []string{SecretText}) || len(m.Sources[2].Verify.Secrets) != 0:
		t.Errorf("sources = %+v", m.Sources)
	}
	if !strings.Contains(string(raw2), `"urls":["nats://user:\u003csecret\u003e@c:4222"]`) && !strings.Contains(string(raw2), `"urls":["nats://user:<secret>@c:4222"]`) {
		t.Errorf("nats urls not hidden: %s", raw2)
	}
	if !strings.Contains(string(y), "api_key: <secret>") || !strings.Contains(string(y), "base_url: https://operator.io/v1") {
		t.Errorf("yaml dump:\n%s", y)
	}
	// Dumping changes nothing.
	if c.Operator.APIKey != "op-secret-key" || c.Storage.NATS.URL != "nats://user:nats-pass@a:4222,nats://nats-token@b:4222" {
		t.Error("dump changed the config")
	}
}

func reflectEqual(a, b []string) bool { return reflect.DeepEqual(a, b) }

// setPath sets the value at a field path ("sources[0].verify.secrets") in
// a parsed document, making the mappings and list items on the way.
func setPath(doc *yaml.Node, path string, val *yaml.Node) {
	cur := doc.Content[0]
	segs := strings.Split(path, ".")
	for i, seg := range segs {
		name, list := strings.CutSuffix(seg, "[0]")
		lastSeg := i == len(segs)-1
		var child *yaml.Node
		for j := 0; j+1 < len(cur.Content); j += 2 {
			if cur.Content[j].Value == name {
				child = cur.Content[j+1]
				if lastSeg && !list {
					cur.Content[j+1] = val
					return
				}
			}
		}
		if child == nil {
			child = &yaml.Node{Kind: yaml.MappingNode}
			if list {
				child.Kind = yaml.SequenceNode
			}
			if lastSeg && !list {
				child = val
			}
			cur.Content = append(cur.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, child)
			if lastSeg && !list {
				return
			}
		}
		if list {
			if len(child.Content) == 0 {
				child.Content = append(child.Content, &yaml.Node{Kind: yaml.MappingNode})
			}
			if lastSeg {
				child.Content[0] = val
				return
			}
			child = child.Content[0]
		}
		cur = child
	}
}

func withValue(t *testing.T, path string, val *yaml.Node) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(minimal), &doc); err != nil {
		t.Fatal(err)
	}
	setPath(&doc, path, val)
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Style: yaml.DoubleQuotedStyle}
}

func parseNode(t *testing.T, s string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

// No error shows the value of a secret field, whatever shape it is
// written in, written in place or from the environment.
func TestErrorsNeverShowSecrets(t *testing.T) {
	const secret = "ghsecret-Zq7w"
	vars := env(map[string]string{"S": secret, "SP": " " + secret + "\t"})
	for _, f := range secretFields(t) {
		for _, v := range []*yaml.Node{
			scalar(secret), scalar(secret + " x"), scalar(" " + secret), scalar("${S}"), scalar("${SP}"), scalar("${S}${MISSING}"),
			parseNode(t, "["+secret+"]"), parseNode(t, `["${S}", "${SP}"]`), parseNode(t, "{"+secret+": "+secret+"}"),
			parseNode(t, "[["+secret+"]]"), parseNode(t, "["+secret+", '', {a: "+secret+"}]"),
		} {
			src := withValue(t, f.path, v)
			_, err := Parse(src, t.TempDir(), vars)
			if err != nil && strings.Contains(err.Error(), "Zq7w") {
				t.Errorf("%s: error shows the secret:\n%v\nfor:\n%s", f.path, err, src)
			}
		}
	}
	// A string where the list of secrets was meant is an error, not shown.
	_, err := Parse(withValue(t, "sources[0].verify.secrets", scalar(secret)), "", vars)
	if err == nil || !strings.Contains(err.Error(), `sources[0] "gh".verify.secrets (line 6): expected a list, got a single value`) {
		t.Errorf("err = %v", err)
	}
}

// No error shows a value that came from the environment, in whatever
// field it lands; errors found after loading (Describe) neither.
func TestErrorsNeverShowEnvValues(t *testing.T) {
	values := []string{"Zz env%value", "zzEnvValue", "-9", "/zz/envpath", "zz"}
	for _, f := range leaves(reflect.TypeFor[Config](), "") {
		for _, value := range values {
			vars := env(map[string]string{"V": value})
			v := scalar("${V}")
			if f.typ.Kind() == reflect.Slice {
				v = parseNode(t, `["${V}"]`)
			}
			src := withValue(t, f.path, v)
			c, err := Parse(src, t.TempDir(), vars)
			if err == nil {
				// Compiling comes later; its errors go through Describe.
				err = c.Describe(fmt.Errorf("%s: bad value %q (%s): unknown name %s (1:1)", strings.TrimSuffix(f.path, "[0]"), value, value, value))
			}
			if leaked(err.Error(), value) {
				t.Errorf("%s = ${V} = %q: error shows it:\n%v", f.path, value, err)
			}
		}
	}
}

// leaked reports whether msg shows value other than inside a longer word.
func leaked(msg, value string) bool {
	return scrub(msg, value) != msg
}

func TestScrub(t *testing.T) {
	for _, tc := range []struct{ msg, v, want string }{
		{`expected a list, got "s"`, "s", `expected a list, got "<hidden>"`},
		{`invalid duration "5x"`, "5x", `invalid duration "<hidden>"`},
		{`open /d/zz: no such file`, "/d/zz", `open <hidden>: no such file`},
		{`zzz zz azz zz`, "zz", `zzz <hidden> azz <hidden>`},
		{`nothing`, "", `nothing`},
	} {
		if got := scrub(tc.msg, tc.v); got != tc.want {
			t.Errorf("scrub(%q, %q) = %q, want %q", tc.msg, tc.v, got, tc.want)
		}
	}
}

// compileError is an error of the kind package route returns.
type compileError struct{ field, msg string }

func (e *compileError) Error() string { return e.field + ": " + e.msg }

// Describe gives errors found after loading the item's name and the line,
// as Load's own errors read.
func TestDescribe(t *testing.T) {
	src := `operator: {api_key: k}
sources:
  - {name: gh, path: /gh, verify: {type: github, secrets: [s]}}
routes:
  - {name: one, source: gh, template: t}
  - {name: two, source: gh, template: t}
  - name: ci-failures
    source: gh
    filter: 'evnt == "x"'
    template: t
`
	c := mustParse(t, src, nil)
	inner := &compileError{"filter", "unknown name evnt (1:1)"}
	err := c.Describe(errors.Join(
		fmt.Errorf("routes[2].%w", inner),
		errors.New("no field here"),
		fmt.Errorf("sources[0].verify: %w", errors.New("bad")),
	))
	want := "routes[2] \"ci-failures\".filter (line 9): unknown name evnt (1:1)\nno field here\nsources[0] \"gh\".verify (line 3): bad"
	if err == nil || err.Error() != want {
		t.Fatalf("Describe =\n%v\nwant\n%s", err, want)
	}
	var fe *FieldError
	var ce *compileError
	if !errors.As(err, &fe) || fe.Field != "routes[2].filter" || fe.Line != 9 || !errors.As(err, &ce) || ce != inner {
		t.Errorf("Describe lost the field or the cause: %#v", fe)
	}
	if c.Describe(nil) != nil {
		t.Error("Describe(nil) != nil")
	}
	// A field named inside the message is taken into the path when the
	// file wrote it.
	err = c.Describe(fmt.Errorf("sources[0].verify: %w", errors.New(`type: "x" is not one of a, b`)))
	if want := `sources[0] "gh".verify.type (line 3): "x" is not one of a, b`; err.Error() != want {
		t.Errorf("Describe = %v, want %s", err, want)
	}
	err = c.Describe(fmt.Errorf("sources[0].verify: %w", errors.New(`header: required`)))
	if want := `sources[0] "gh".verify (line 3): header: required`; err.Error() != want {
		t.Errorf("Describe = %v, want %s", err, want)
	}
	err = c.Describe(errors.Join(fmt.Errorf("routes[2].%w", inner),
		errors.New("no field here"),
		fmt.Errorf("sources[0].verify: %w", errors.New("bad"))))
	// An already described error is left alone.
	if again := c.Describe(err); again.Error() != want {
		t.Errorf("described twice: %v", again)
	}
	// Secrets never show, whatever the compiler quoted.
	if got := c.Describe(fmt.Errorf("sources[0].verify.secrets[0]: %q is not base64", "s")).Error(); strings.Contains(got, `"s"`) {
		t.Errorf("Describe shows a secret: %s", got)
	}
}
