package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds relay.yaml; maxFileBytes bounds each file it names
// (secrets, templates), so a path to a device cannot exhaust memory.
const (
	maxConfigBytes = 8 << 20
	maxFileBytes   = 1 << 20
)

// Options adjust loading.
type Options struct {
	// Dev accepts an empty or unset operator.api_key: relayd serve --dev
	// talks to the in-process fake Operator, which takes any key.
	Dev bool
	// Lookup reads environment variables for ${VAR}; nil means os.LookupEnv.
	Lookup func(string) (string, bool)
	// ReadFile reads the files the config names (_file twins, template_file,
	// NATS credentials); nil means regular files on disk, up to 1 MiB each.
	ReadFile func(name string) ([]byte, error)
	// Unset, when not empty, stands in for variables that are unset and
	// have no default, instead of failing the load: commands that need only
	// part of the config (the admin address) work in a shell without the
	// daemon's secrets.
	Unset string
}

func (o Options) lookup() func(string) (string, bool) {
	if o.Lookup != nil {
		return o.Lookup
	}
	return os.LookupEnv
}

func (o Options) readFile() func(string) ([]byte, error) {
	if o.ReadFile != nil {
		return o.ReadFile
	}
	return readRegularFile
}

// Load reads, expands, decodes and validates the config file at path, with
// the process environment. Relative _file and template_file paths resolve
// against the file's directory. The error lists every problem found, one per
// line, each a *FieldError naming its field.
func Load(path string) (*Config, error) { return LoadWith(path, Options{}) }

// LoadWith is Load with options.
func LoadWith(path string, o Options) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseWith(data, filepath.Dir(path), o)
	if err != nil {
		return nil, err
	}
	c.Path = path
	return c, nil
}

// Parse is Load for bytes: relative paths resolve against baseDir, and
// lookup (nil: os.LookupEnv) reads the environment.
func Parse(data []byte, baseDir string, lookup func(string) (string, bool)) (*Config, error) {
	return ParseWith(data, baseDir, Options{Lookup: lookup})
}

// ParseWith is Parse with options.
func ParseWith(data []byte, baseDir string, o Options) (*Config, error) {
	if len(data) > maxConfigBytes {
		return nil, &FieldError{Err: fmt.Errorf("config larger than %d bytes", maxConfigBytes)}
	}
	var doc yaml.Node
	if err := unmarshalNode(data, &doc); err != nil {
		return nil, &FieldError{Err: err}
	}
	w := newWalker(o)
	top := w.document(&doc)
	if w.fatal {
		return nil, joinErrors(w.errs)
	}
	c := &Config{}
	if top != nil {
		if err := top.Decode(c); err != nil {
			// The walk checked every value; this is a safety net.
			return nil, joinErrors(append(w.errs, &FieldError{Err: err}))
		}
	}
	md := w.md
	c.md = func() *meta { return md }
	l := &loader{
		c:       c,
		opts:    o,
		read:    o.readFile(),
		baseDir: baseDir,
		md:      w.md,
		bad:     w.bad,
		errs:    w.errs,
	}
	l.files()
	l.defaults()
	l.validate()
	if len(l.errs) > 0 {
		return nil, joinErrors(l.errs)
	}
	return c, nil
}

// maxErrors keeps a hopeless file (say, a binary) from printing pages.
const maxErrors = 50

func joinErrors(errs []error) error {
	if len(errs) > maxErrors {
		more := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("… and %d more errors", more))
	}
	return errors.Join(errs...)
}

// unmarshalNode parses YAML into a node tree. A panic inside the YAML
// library on hostile input becomes an error: a config file must never
// crash the process that checks it.
func unmarshalNode(data []byte, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("invalid YAML: %v", r)
		}
	}()
	return yaml.Unmarshal(data, doc)
}

// readRegularFile reads a regular file (following symlinks, as Kubernetes
// secret mounts use them), refusing devices and FIFOs, which could block or
// never end.
func readRegularFile(name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, maxFileBytes)
	}
	return data, nil
}

// loader resolves, defaults and validates a decoded config, collecting
// every error.
type loader struct {
	c       *Config
	opts    Options
	read    func(string) ([]byte, error)
	baseDir string
	md      *meta
	bad     map[string]bool
	errs    []error
}

// errorf records a problem with field, unless the field or one of its
// parents was already reported while reading the file. When the field holds
// a secret or a value from the environment, the arguments (the values the
// message would quote) are not shown.
func (l *loader) errorf(field, format string, args ...any) {
	if len(args) > 0 && l.md.sensitive(field) {
		format = verbRE.ReplaceAllString(format, "%s")
		for i := range args {
			args[i] = hiddenText
		}
	}
	l.add(field, fmt.Errorf(format, args...))
}

// verbRE matches a fmt verb with its flags, width and precision.
var verbRE = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z]`)

func (l *loader) add(field string, err error) {
	for _, p := range parents(field) {
		if l.bad[p] {
			return
		}
	}
	l.errs = append(l.errs, l.md.fieldError(field, lineOf(l.md.lines, field), err))
}

// written reports whether the file gave field a (non-null) value.
func (l *loader) written(field string) bool {
	_, ok := l.md.lines[field]
	return ok
}

func (l *loader) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || l.baseDir == "" {
		return p
	}
	return filepath.Join(l.baseDir, p)
}
