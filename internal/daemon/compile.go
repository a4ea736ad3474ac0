package daemon

import (
	"fmt"
	"slices"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/payload"
	"github.com/relayd/relayd/internal/prompt"
	"github.com/relayd/relayd/internal/route"
	"github.com/relayd/relayd/internal/verify"
)

// CompileIngest compiles what ingest serves from a loaded (validated)
// config. Errors are *ingest.FieldError, named by their config path.
func CompileIngest(cfg *config.Config) (*ingest.Table, error) {
	spec, err := IngestSpec(cfg)
	if err != nil {
		return nil, err
	}
	return ingest.Compile(spec)
}

// IngestSpec maps a loaded config to ingest's own spec.
func IngestSpec(cfg *config.Config) (ingest.Spec, error) {
	spec := ingest.Spec{
		MaxBody:     cfg.Server.MaxBodyBytes,
		MaxInflated: cfg.Server.MaxInflatedBytes,
		MaxInflight: cfg.Server.MaxInflightBodyBytes,
		TrustProxy:  cfg.Server.TrustProxy,
		DedupeTTL:   cfg.Storage.DedupeTTL.D(),
		Sources:     make([]ingest.SourceSpec, len(cfg.Sources)),
		Routes:      make([]route.Spec, len(cfg.Routes)),
	}
	for i := range cfg.Sources {
		sc := &cfg.Sources[i]
		spec.Sources[i] = ingest.SourceSpec{
			Name:           sc.Name,
			Path:           sc.Path,
			Verify:         VerifySpec(sc.Verify),
			EventHeader:    sc.EventHeader,
			DeliveryHeader: sc.DeliveryHeader,
			Body:           bodyModes[sc.Body],
			Envelope:       envelopes[sc.Unwrap],
			DedupeTTL:      sc.DedupeTTL.D(),
			AllowNets:      sc.AllowedPrefixes(),
			Delivery:       sc.Delivery,
		}
	}
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		// Load compiled every pattern already; this cannot fail on a
		// loaded config, but a hand-built one gets a named error.
		red, err := prompt.NewRedactor(cfg.RedactFor(rc))
		if err != nil {
			return ingest.Spec{}, &ingest.FieldError{Field: fmt.Sprintf("routes[%d].redact", i), Err: err}
		}
		spec.Routes[i] = route.Spec{
			Name: rc.Name, Source: rc.Source, Filter: rc.Filter,
			Conversation: rc.Conversation, Template: rc.Template,
			Redactor: red, MaxPromptBytes: rc.MaxPromptBytes,
			Supersede: rc.Supersede, BatchTemplate: rc.BatchTemplate,
			ReplyTarget: slices.ContainsFunc(rc.Reply, func(s config.ReplySink) bool { return s.Type == config.ReplyGitHub }),
		}
	}
	return spec, nil
}

// bodyModes and envelopes map the values config accepts for body and
// unwrap; config rejects any other, and "" is the default.
var (
	bodyModes = map[string]payload.Mode{"": payload.JSON, "json": payload.JSON, "text": payload.Text, "auto": payload.Auto}
	envelopes = map[string]payload.Envelope{"": payload.Bare, "s3": payload.S3, "pubsub": payload.PubSub, "cloudevents": payload.CloudEvents}
)

// VerifySpec maps a source's verify block to verify's spec; nil (which
// config rejects) maps to the zero Spec, which verify.New rejects.
func VerifySpec(v *config.Verify) verify.Spec {
	if v == nil {
		return verify.Spec{}
	}
	return verify.Spec{
		Type:         v.Type,
		Secrets:      v.Secrets,
		Header:       v.Header,
		Algorithm:    v.Algorithm,
		Encoding:     v.Encoding,
		Prefix:       v.Prefix,
		Tolerance:    v.Tolerance.D(),
		Timestamped:  v.Timestamped,
		TimestampKey: v.TimestampKey,
		SignatureKey: v.SignatureKey,
		Separator:    v.Separator,
		Topics:       v.Topics,
		CertHosts:    v.CertHosts,
		CAFile:       v.CAFile,
		Issuer:       v.Issuer,
		Audience:     v.Audience,
		Email:        v.Email,
		JWKSURL:      v.JWKSURL,
		Username:     v.Username,
	}
}
