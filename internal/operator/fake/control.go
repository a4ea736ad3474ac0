package fake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// handleControl serves the /_fake/ fault-injection surface described in the
// package documentation.
func (s *Server) handleControl(w http.ResponseWriter, r *http.Request) {
	type route struct{ method, path string }
	switch (route{r.Method, r.URL.Path}) {
	case route{http.MethodGet, "/_fake/requests"}:
		reqs := s.Requests()
		for i := range reqs {
			if reqs[i].Header.Get("Authorization") != "" {
				reqs[i].Header.Set("Authorization", "[redacted]")
			}
		}
		writeJSON(w, http.StatusOK, reqs)
	case route{http.MethodGet, "/_fake/chats"}:
		writeJSON(w, http.StatusOK, s.Chats())
	case route{http.MethodGet, "/_fake/stats"}:
		s.mu.Lock()
		st := map[string]any{"requests": len(s.reqs), "chats": len(s.chats), "overlaps": s.overlaps, "down": s.down}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, st)
	case route{http.MethodPost, "/_fake/faults"}:
		var in struct {
			Next   int      `json:"next"`
			Fault  *Fault   `json:"fault"`
			Rate   *float64 `json:"rate"`
			Faults []Fault  `json:"faults"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.Next > 0 && in.Fault == nil {
			controlError(w, "next needs a fault")
			return
		}
		if in.Next > 0 {
			s.FailNext(in.Next, *in.Fault)
		}
		if in.Rate != nil {
			if *in.Rate < 0 || *in.Rate > 1 {
				controlError(w, "rate must be within [0, 1]")
				return
			}
			s.FailRate(*in.Rate, in.Faults)
		}
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodDelete, "/_fake/faults"}:
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodPost, "/_fake/down"}:
		var in struct {
			Down bool   `json:"down"`
			Mode string `json:"mode"`
		}
		if !decode(w, r, &in) {
			return
		}
		switch in.Mode {
		case "", "unavailable":
			s.SetDownMode(DownUnavailable)
		case "drop":
			s.SetDownMode(DownDrop)
		default:
			controlError(w, `mode must be "unavailable" or "drop"`)
			return
		}
		s.SetDown(in.Down)
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodPost, "/_fake/latency"}:
		var in struct{ Min, Max string }
		if !decode(w, r, &in) {
			return
		}
		lo, err1 := parseDur(in.Min)
		hi, err2 := parseDur(in.Max)
		if err1 != nil || err2 != nil || lo < 0 || hi < 0 {
			controlError(w, `min and max are durations such as "50ms"`)
			return
		}
		s.SetLatency(lo, hi)
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodPost, "/_fake/turn"}:
		var in Turn
		if !decode(w, r, &in) {
			return
		}
		s.SetTurn(in)
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodPost, "/_fake/keys"}:
		var in struct {
			Keys []string `json:"keys"`
		}
		if !decode(w, r, &in) {
			return
		}
		s.SetKeys(in.Keys)
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodPost, "/_fake/forget"}:
		var in struct {
			ChatID string `json:"chatId"`
		}
		if !decode(w, r, &in) {
			return
		}
		if in.ChatID == "" {
			controlError(w, "chatId is required")
			return
		}
		s.ForgetChat(in.ChatID)
		w.WriteHeader(http.StatusNoContent)
	case route{http.MethodPost, "/_fake/reset"}:
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusNotFound, "not_found", false, "no such control endpoint", nil)
	}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		controlError(w, fmt.Sprintf("invalid JSON: %v", err))
		return false
	}
	return true
}

func controlError(w http.ResponseWriter, msg string) {
	writeError(w, http.StatusBadRequest, "bad_request", false, msg, nil)
}

func parseDur(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	return time.ParseDuration(s)
}
