package natsq

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/xtime"
)

// Defaults for zero Options fields.
const (
	DefaultStream       = "RELAYD"
	DefaultConsumerName = "relayd"
	DefaultPartitions   = 16
	DefaultAckWait      = 30 * time.Second
	DefaultWindow       = 16384
	DefaultDedupeTTL    = 24 * time.Hour
	DefaultTimeout      = 5 * time.Second

	// attemptsTTL bounds how long a retry record outlives its last write,
	// so records whose delete was lost do not pile up.
	attemptsTTL = 7 * 24 * time.Hour
	// statsTTL is how long Stats and the max_pending count are cached: a
	// scrape or a burst of webhooks costs one round of requests per second.
	statsTTL = time.Second
	// metaPartitions records P on the stream, to warn when replicas disagree.
	metaPartitions = "relayd_partitions"
)

// Options configure Open. Zero fields take the defaults above.
type Options struct {
	// URLs of the NATS servers; an entry may itself be a comma-separated list.
	URLs []string
	// Stream names the messages stream; the dead-letter stream and the KV
	// buckets are named after it. Letters, digits, '-' and '_' only.
	Stream    string
	CredsFile string
	TLS       TLS
	// Replicas of every stream and bucket (1 for a single server; 3 for a
	// typical cluster).
	Replicas int
	// Partitions is P, the number of partitions: each is owned by one
	// replica at a time, so at most P replicas share the work.
	Partitions int
	// MaxPending caps the messages in the stream; Enqueue past it returns
	// queue.ErrFull. 0 means no cap. Replays of dead letters are not
	// refused: an operator asked for them. The count is read at most once a
	// second, so replicas may overshoot it briefly.
	MaxPending int
	// DedupeTTL is the longest dedupe window any source uses: the dedupe
	// bucket keeps no key longer than this.
	DedupeTTL time.Duration
	// AckWait is OwnerTTL's default. (Before partitions had owners it was
	// how long a lease could go without a heartbeat.)
	AckWait time.Duration
	// OwnerTTL is how long a replica's membership and partition claims last
	// without a refresh: a replica that dies holds its partitions this long
	// before others take them over. Claims are refreshed every OwnerTTL/3.
	// Default AckWait.
	OwnerTTL time.Duration
	// Window is how many messages of one partition its owner holds at once
	// (the consumer's MaxAckPending): the conversations it schedules among.
	// Past a conversation's first messages (and past a byte budget per
	// partition) a held message costs about 200 bytes, not its body.
	Window int
	// ConsumerName prefixes the durable consumers ("<name>-p<N>"). Every
	// replica sharing the stream must use the same name.
	ConsumerName string
	// Timeout bounds each request to NATS when ctx has no earlier deadline.
	Timeout time.Duration
	Logger  *slog.Logger // default: discard
	Now     func() time.Time
	// Turns gives each route's turn policy. SetTurnPolicies replaces it.
	Turns queue.TurnPolicies
}

// TLS is the client's TLS material; the zero value sets none (a tls://
// URL still negotiates TLS with the system roots).
type TLS struct {
	CAFile             string
	CertFile           string // with KeyFile, or neither
	KeyFile            string
	InsecureSkipVerify bool
}

func (o *Options) defaults() error {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if !validName(o.Stream) {
		return fmt.Errorf("natsq: stream %q: use letters, digits, '-' and '_'", o.Stream)
	}
	if o.ConsumerName == "" {
		o.ConsumerName = DefaultConsumerName
	}
	if !validName(o.ConsumerName) {
		return fmt.Errorf("natsq: consumer name %q: use letters, digits, '-' and '_'", o.ConsumerName)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Partitions <= 0 {
		o.Partitions = DefaultPartitions
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	if o.OwnerTTL <= 0 {
		o.OwnerTTL = o.AckWait
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.DedupeTTL <= 0 {
		o.DedupeTTL = DefaultDedupeTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxPending < 0 {
		o.MaxPending = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var urls []string
	for _, u := range o.URLs {
		for _, p := range strings.Split(u, ",") {
			if p = strings.TrimSpace(p); p != "" {
				urls = append(urls, p)
			}
		}
	}
	if len(urls) == 0 {
		urls = []string{nats.DefaultURL}
	}
	o.URLs = urls
	return nil
}

// Store is the JetStream backend. It is safe for concurrent use, and any
// number of Stores (one per replica) may share one stream.
type Store struct {
	o   Options
	n   names
	log *slog.Logger

	nc       *nats.Conn
	js       jetstream.JetStream
	stream   jetstream.Stream
	dlq      jetstream.Stream
	chats    jetstream.KeyValue
	attempts jetstream.KeyValue
	dedupe   jetstream.KeyValue
	turnKV   jetstream.KeyValue // newest message per supersede key, last turn end per conversation
	limitsKV jetstream.KeyValue // rate limits shared by the replicas (see limits.go)
	lim      *RateLimiter
	limOnce  sync.Once
	turns    atomic.Pointer[queue.TurnPolicies]
	// perKeyTTL: the server keeps a TTL per dedupe key (NATS 2.11+);
	// otherwise only the bucket's DedupeTTL applies.
	perKeyTTL bool
	owners    jetstream.KeyValue // membership and partition claims
	// parts are the partitions to own a share of: 0..P-1, and any left by
	// an earlier, larger P whose consumers still exist.
	parts []int
	id    string // this replica's member id
	// paused stops the membership and claim refreshes (tests: a replica
	// that stalls, or is cut off, without dying).
	paused atomic.Bool
	// readFault, when set, fails reading a held message back (tests).
	readFault atomic.Pointer[error]

	ctx    context.Context // ends at Close; owns every goroutine below
	cancel context.CancelFunc
	wg     sync.WaitGroup
	reconn chan struct{} // a reconnect happened: re-provision

	mu     sync.Mutex
	closed bool
	sched                      // conversations held, by partition owned (see consume.go)
	hist   *natsHistory        // nil until OpenHistory (see history.go)
	owned  map[int]*part       // partitions this replica owns, taken or being given back
	rep    map[int]queue.Stats // other owners' last reported counts, by partition

	cacheMu   sync.Mutex
	pendN     int // messages in the stream, as last read
	pendAt    time.Time
	stats     queue.Stats
	statsAt   time.Time
	statsErr  error
	statsLock sync.Mutex // one refresh at a time

	chatCounts *chatCounts
	chatCache  chatCache
}

var _ queue.Lease = (*lease)(nil)

// Open connects, creates or updates the streams, buckets and consumers
// (idempotent, so every replica does it), and starts fetching.
func Open(ctx context.Context, o Options) (*Store, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	s := &Store{
		o:      o,
		n:      newNames(o.Stream, o.ConsumerName),
		log:    o.Logger.With("component", "natsq", "stream", o.Stream),
		reconn: make(chan struct{}, 1),
		id:     newMemberID(),
		owned:  map[int]*part{},
		rep:    map[int]queue.Stats{},
	}
	s.sched.init()
	s.chatCounts = newChatCounts()
	s.SetTurnPolicies(o.Turns)
	nc, err := s.connect()
	if err != nil {
		return nil, fmt.Errorf("natsq: connect: %w: %w", queue.ErrUnavailable, err)
	}
	s.nc = nc
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(o.Timeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("natsq: %w", err)
	}
	s.js = js
	if err := s.provision(ctx, true); err != nil {
		nc.Close()
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(3)
	go s.own()
	go s.maintain()
	go s.watchChats()
	return s, nil
}

func (s *Store) connect() (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("relayd"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		// No buffering while disconnected: a publish must fail at once so
		// ingest answers 503, rather than land later after we said so.
		nats.ReconnectBufSize(-1),
		nats.Timeout(s.o.Timeout),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				s.log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			s.log.Info("nats reconnected", "server", c.ConnectedUrlRedacted())
			s.reprovision()
			// Deliveries under way when the connection broke are lost, and
			// a later message of their conversation may come first: read
			// every partition owned again from its start.
			s.mu.Lock()
			for _, p := range s.owned {
				s.signalLocked(p, modeResync)
			}
			s.mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			s.log.Warn("nats async error", "err", err)
		}),
	}
	if s.o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(s.o.CredsFile))
	}
	tc, err := tlsConfig(s.o.TLS)
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return nats.Connect(strings.Join(s.o.URLs, ","), opts...)
}

// tlsConfig builds the client TLS settings, or nil when none are set (a
// tls:// URL still negotiates TLS with the system roots).
func tlsConfig(t TLS) (*tls.Config, error) {
	if t == (TLS{}) {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca_file %s: no certificates found", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls cert_file/key_file: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// provision creates or updates everything the store uses. With first set
// it also keeps the handles and finds the consumers to fetch from; later
// calls (after a reconnect) only make sure nothing went missing, for
// example when the NATS server lost its storage.
func (s *Store) provision(ctx context.Context, first bool) error {
	o := s.o
	fail := func(what string, err error) error {
		return fmt.Errorf("natsq: %s: %w: %w", what, queue.ErrUnavailable, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 4*o.Timeout)
	defer cancel()

	scfg := jetstream.StreamConfig{
		Name:        s.n.stream,
		Description: "relayd queued messages",
		Subjects:    []string{s.n.msgsWildcard()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Discard:     jetstream.DiscardNew,
		Duplicates:  2 * time.Minute,
		Metadata:    map[string]string{metaPartitions: strconv.Itoa(o.Partitions)},
	}
	if first {
		if info, err := s.js.Stream(cctx, s.n.stream); err == nil {
			if old := info.CachedInfo().Config.Metadata[metaPartitions]; old != "" && old != scfg.Metadata[metaPartitions] {
				s.log.Warn("partitions changed: conversation order is kept only once every replica uses the new value",
					"was", old, "now", o.Partitions)
			}
		}
	}
	stream, err := createOrUpdateStream(cctx, s.js, scfg)
	if err != nil {
		return fail("stream "+s.n.stream, err)
	}
	dlq, err := createOrUpdateStream(cctx, s.js, jetstream.StreamConfig{
		Name:        s.n.dlq,
		Description: "relayd dead letters",
		Subjects:    []string{s.n.dlqWildcard()},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return fail("stream "+s.n.dlq, err)
	}
	chats, err := s.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: s.n.chats, Description: "relayd chat ids", History: 1,
		Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return fail("bucket "+s.n.chats, err)
	}
	attempts, err := s.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: s.n.attempts, Description: "relayd retry records", History: 1,
		TTL: attemptsTTL, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return fail("bucket "+s.n.attempts, err)
	}
	turnKV, err := s.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: s.n.turns, Description: "relayd turn state", History: 1,
		TTL: attemptsTTL, Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return fail("bucket "+s.n.turns, err)
	}
	limitsKV, err := s.provisionLimits(cctx)
	if err != nil {
		return fail("bucket "+s.n.stream+"_limits", err)
	}
	owners, err := s.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
		Bucket: s.n.owners, Description: "relayd replicas and partition owners", History: 1,
		Storage: jetstream.FileStorage, Replicas: o.Replicas,
	})
	if err != nil {
		return fail("bucket "+s.n.owners, err)
	}
	dcfg := jetstream.KeyValueConfig{
		Bucket: s.n.dedupe, Description: "relayd delivery dedupe marks", History: 1,
		TTL: o.DedupeTTL, Storage: jetstream.FileStorage, Replicas: o.Replicas,
		// Enables per-key TTLs, so each source's own window applies.
		LimitMarkerTTL: time.Minute,
	}
	perKeyTTL := true
	dedupe, err := s.js.CreateOrUpdateKeyValue(cctx, dcfg)
	if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) {
		// NATS before 2.11: the bucket-wide TTL is the only window.
		perKeyTTL = false
		dcfg.LimitMarkerTTL = 0
		dedupe, err = s.js.CreateOrUpdateKeyValue(cctx, dcfg)
	}
	if err != nil {
		return fail("bucket "+s.n.dedupe, err)
	}

	if first {
		parts := map[int]bool{}
		for p := range o.Partitions {
			parts[p] = true
		}
		// Partitions left by a larger P keep their messages: drain them.
		lister := stream.ConsumerNames(cctx)
		for name := range lister.Name() {
			if p, ok := s.n.partOfConsumer(name); ok {
				parts[p] = true
			}
		}
		if err := lister.Err(); err != nil {
			return fail("list consumers", err)
		}
		// And so do those whose messages no consumer was made for yet.
		counts, err := subjectCounts(cctx, stream, s.n.msgsWildcard())
		if err != nil {
			return fail("stream subjects", err)
		}
		for subj := range counts {
			if p, ok := s.n.partOfSubject(subj); ok {
				parts[p] = true
			}
		}
		s.stream, s.dlq, s.chats, s.attempts, s.dedupe, s.turnKV, s.owners = stream, dlq, chats, attempts, dedupe, turnKV, owners
		s.perKeyTTL = perKeyTTL
		s.limitsKV = limitsKV
		s.parts = slices.Sorted(maps.Keys(parts))
	}
	return nil
}

// subjectCounts returns the stream's message count by subject, for the
// subjects matching filter.
func subjectCounts(ctx context.Context, st jetstream.Stream, filter string) (map[string]uint64, error) {
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// createOrUpdateStream tolerates a concurrent create by another replica.
func createOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		st, err = js.CreateOrUpdateStream(ctx, cfg)
	}
	return st, err
}

// reprovision asks maintain to make sure the streams, buckets and consumers
// exist.
func (s *Store) reprovision() {
	select {
	case s.reconn <- struct{}{}:
	default:
	}
}

// maintain re-provisions after reconnects (or when a consumer went missing)
// until it succeeds.
func (s *Store) maintain() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.reconn:
		}
		for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
			err := s.provision(s.ctx, false)
			if err == nil {
				break
			}
			s.log.Warn("re-provisioning failed", "err", err)
			if xtime.Sleep(s.ctx, wait) != nil {
				return
			}
		}
	}
}

// Close stops fetching, gives up this replica's partitions and its
// membership (so another replica, or the next process, takes them at once),
// and closes the connection. Leases still held by callers are abandoned:
// the partition's next owner delivers their messages again. Close is
// idempotent.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.wakeAllLocked()
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.resign()
	if s.nc.IsConnected() {
		_ = s.nc.FlushTimeout(s.o.Timeout)
	}
	s.nc.Close()
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Ping reports whether NATS is connected and JetStream answers for the
// stream, for /readyz.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return queue.ErrClosed
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("natsq: nats %s: %w", st, queue.ErrUnavailable)
	}
	ctx, cancel := s.opCtx(ctx)
	defer cancel()
	info, err := s.stream.Info(ctx)
	if err != nil {
		return s.fail("stream info", err)
	}
	s.cacheMu.Lock()
	s.pendN, s.pendAt = int(info.State.Msgs), time.Now()
	s.cacheMu.Unlock()
	return nil
}

// opCtx bounds one request by Options.Timeout.
func (s *Store) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.o.Timeout)
}

// fail wraps a NATS error for callers: ErrClosed after Close, otherwise
// ErrUnavailable (with the cause kept, so context errors still match).
func (s *Store) fail(op string, err error) error {
	if s.isClosed() || errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("natsq: %s: %w", op, queue.ErrClosed)
	}
	return fmt.Errorf("natsq: %s: %w: %w", op, queue.ErrUnavailable, err)
}
