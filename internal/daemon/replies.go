package daemon

import (
	"errors"
	"fmt"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/reply"
)

// CheckReplies compiles every route's replies as serve would, for relayd
// check. Errors are as withReplies gives them.
func CheckReplies(cfg *config.Config) error {
	_, err := withReplies(dispatch.Settings{Routes: map[string]dispatch.RouteSettings{}}, cfg, "check")
	return err
}

// withReplies compiles each route's reply sinks and reply_template into the
// dispatch settings. Errors are *ingest.FieldError named by the route's
// path ("routes[2]: reply[1].url: …"), for config.Describe.
func withReplies(s dispatch.Settings, cfg *config.Config, version string) (dispatch.Settings, error) {
	var errs []error
	for i := range cfg.Routes {
		rc := &cfg.Routes[i]
		if len(rc.Reply) == 0 && rc.ReplyTemplate == "" {
			continue
		}
		specs := make([]reply.Spec, len(rc.Reply))
		for j, rs := range rc.Reply {
			specs[j] = reply.Spec{Type: rs.Type, Token: string(rs.Token), APIURL: rs.APIURL, URL: string(rs.URL), Secret: string(rs.Secret)}
		}
		r, err := reply.Compile(rc.Name, specs, rc.ReplyTemplate, reply.Options{UserAgent: "relayd/" + version})
		if err != nil {
			field := fmt.Sprintf("routes[%d]", i)
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					errs = append(errs, &ingest.FieldError{Field: field, Err: e})
				}
			} else {
				errs = append(errs, &ingest.FieldError{Field: field, Err: err})
			}
			continue
		}
		rs := s.Routes[rc.Name]
		rs.Replier = r
		s.Routes[rc.Name] = rs
	}
	return s, errors.Join(errs...)
}
