package config

import (
	"errors"
	"fmt"
	"strings"
)

// files reads the _file twins and template files. Secret files lose their
// trailing whitespace (the newline editors and kubectl leave); templates are
// kept verbatim.
func (l *loader) files() {
	c := l.c
	l.secretFile("server.admin_token", &c.Server.AdminToken, c.Server.AdminTokenFile)
	l.secretFile("operator.api_key", &c.Operator.APIKey, c.Operator.APIKeyFile)

	for i := range c.Sources {
		v := c.Sources[i].Verify
		if v == nil || v.SecretsFile == "" {
			continue
		}
		field := index("sources", i) + ".verify.secrets_file"
		if len(v.Secrets) > 0 {
			l.errorf(field, "set only one of secrets and secrets_file")
			continue
		}
		data, err := l.read(l.resolve(v.SecretsFile))
		if err != nil {
			l.add(field, err)
			continue
		}
		v.Secrets = secretLines(string(data))
		l.md.hide(index("sources", i)+".verify.secrets", v.Secrets...)
		if len(v.Secrets) == 0 {
			l.errorf(field, "no secrets in %s", v.SecretsFile)
		}
	}

	for i := range c.Routes {
		r := &c.Routes[i]
		p := index("routes", i)
		switch {
		case r.TemplateFile != "" && l.written(p+".template"):
			l.errorf(p+".template_file", "set only one of template and template_file")
		case r.TemplateFile != "":
			data, err := l.read(l.resolve(r.TemplateFile))
			if err != nil {
				l.add(p+".template_file", err)
				break
			}
			if strings.TrimSpace(string(data)) == "" {
				l.errorf(p+".template_file", "%s is empty", r.TemplateFile)
				break
			}
			r.Template = string(data)
		case strings.TrimSpace(r.Template) == "" && l.written(p+".template"):
			l.errorf(p+".template", "empty")
		case r.Template == "":
			l.errorf(p+".template", "required (set template or template_file)")
		}
		l.replyFiles(p, r)
	}

	// NATS files are opened by the client later; resolve them here, so they
	// mean the same thing as every other relative path in the file.
	n := &c.Storage.NATS
	for _, f := range []*string{&n.CredsFile, &n.TLS.CAFile, &n.TLS.CertFile, &n.TLS.KeyFile} {
		*f = l.resolve(*f)
	}
	// So is a verify ca_file, read when the source's verifier is compiled.
	for i := range c.Sources {
		if v := c.Sources[i].Verify; v != nil {
			v.CAFile = l.resolve(v.CAFile)
		}
	}
}

// secretFile fills *val from the file named by its _file twin.
func (l *loader) secretFile(field string, val *Secret, file string) {
	if file == "" {
		return
	}
	if *val != "" {
		l.errorf(field+"_file", "set only one of %s and %s_file", last(field), last(field))
		return
	}
	data, err := l.read(l.resolve(file))
	if err != nil {
		l.add(field+"_file", err)
		return
	}
	s := strings.TrimRight(string(data), " \t\r\n")
	if s == "" {
		l.add(field+"_file", fmt.Errorf("%s is empty", file))
		return
	}
	if strings.ContainsAny(s, "\r\n") {
		l.add(field+"_file", errors.New("holds more than one line"))
		return
	}
	l.md.hide(field, s)
	*val = Secret(s)
}

// secretLines reads one secret per line, skipping blank lines and # comments.
func secretLines(s string) []string {
	var out []string
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, " \t\r\n")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, line)
	}
	return out
}

func last(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[i+1:]
	}
	return field
}
