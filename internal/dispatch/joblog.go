package dispatch

import (
	"context"
	"log/slog"
	"sync"
)

// jobLog is the handler of a job's logger: the dispatcher's, with the
// job's attributes (message_id, route, delivery, and events for a turn of
// several). It adds them only once the job logs something else than
// "delivered": a handler formats attributes as it takes them, which costs
// about as much as a line, and most jobs log that one line only, which
// carries them in its own record (see job.delivered).
type jobLog struct {
	base  slog.Handler
	buf   [4]slog.Attr
	attrs []slog.Attr
	once  sync.Once
	h     slog.Handler
}

func (l *jobLog) init(base slog.Handler, attrs ...slog.Attr) {
	l.base = base
	l.attrs = append(l.buf[:0], attrs...)
}

func (l *jobLog) handler() slog.Handler {
	l.once.Do(func() { l.h = l.base.WithAttrs(l.attrs) })
	return l.h
}

func (l *jobLog) Enabled(ctx context.Context, lv slog.Level) bool { return l.base.Enabled(ctx, lv) }
func (l *jobLog) Handle(ctx context.Context, r slog.Record) error { return l.handler().Handle(ctx, r) }
func (l *jobLog) WithAttrs(as []slog.Attr) slog.Handler           { return l.handler().WithAttrs(as) }
func (l *jobLog) WithGroup(name string) slog.Handler              { return l.handler().WithGroup(name) }
