package daemon

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/internal/config"
)

// storeCollector reads queue depth and conversation counts at scrape time,
// so no loop polls the store between scrapes. Both come from counts the
// store keeps: a scrape lists no message and no chat.
type storeCollector struct {
	store  Backend
	config func() *config.Config // the running config: routes change on reload
	queue  *prometheus.Desc
	convs  *prometheus.Desc
	free   *prometheus.Desc
	low    *prometheus.Desc
}

func newStoreCollector(s Backend, cfg func() *config.Config) *storeCollector {
	return &storeCollector{
		store:  s,
		config: cfg,
		queue:  prometheus.NewDesc("relayd_queue_messages", "Queued messages by state.", []string{"state"}, nil),
		convs:  prometheus.NewDesc("relayd_conversations", "Conversations with a remembered chat id, by route.", []string{"route"}, nil),
		free:   prometheus.NewDesc("relayd_storage_free_bytes", "Free space on the bbolt file's disk, as last measured.", nil, nil),
		low:    prometheus.NewDesc("relayd_storage_low_space", "1 while free disk space is below storage.min_free_bytes (ingest answers 503), else 0.", nil, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queue
	ch <- c.convs
	ch <- c.free
	ch <- c.low
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if st, err := c.store.Stats(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Ready), "ready")
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Delayed), "delayed")
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Inflight), "inflight")
		ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(st.Dead), "dead")
	}
	if sr, ok := c.store.(spaceReporter); ok {
		if free := sr.FreeBytes(); free >= 0 {
			ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(free))
		}
		low := 0.0
		if sr.LowSpace() != nil {
			low = 1
		}
		ch <- prometheus.MustNewConstMetric(c.low, prometheus.GaugeValue, low)
	}
	if counts, err := c.store.ChatCounts(ctx); err == nil {
		// Every configured route, with or without chats; routes removed by
		// a reload keep no series of their own.
		for _, r := range c.config().Routes {
			ch <- prometheus.MustNewConstMetric(c.convs, prometheus.GaugeValue, float64(counts[r.Name]), r.Name)
		}
	}
}
