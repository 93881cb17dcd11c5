package rabbitmqsink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// ErrUnroutable is wrapped by the permanent error of a mandatory message the
// broker returned: no queue is bound for its routing key.
var ErrUnroutable = errors.New("message returned by the broker")

// Handler publishes change records to a RabbitMQ exchange with publisher
// confirms. It implements consumer.Handler and is safe for concurrent use by the
// Runner's partitions (each Handle call publishes on a channel of its own).
type Handler struct {
	cfg    Config
	log    *slog.Logger
	tables sinkconf.Rules[*table]

	mu   sync.Mutex
	conn *amqp.Connection
	idle []*pubChannel // confirm-mode channels not in use
	// parts remembers, per partition, what a failed batch got done: the records
	// the broker confirmed (not published again when the Runner hands them back
	// while it splits the batch) and those it returned (failed again at once).
	parts map[partKey]*partMemory
	// lastDel is, per partition, the key of a delete that ended the previous
	// batch: the tombstone opening the next one follows it.
	lastDel map[partKey]string

	published, confirmed, returned, nacked, retried, skipped atomic.Uint64
}

type partKey struct {
	topic     string
	partition int32
}

// recID identifies a record of a partition (several rows share an offset in
// canal-json records).
type recID struct {
	offset int64
	row    int
}

type partMemory struct {
	upTo     int64 // the highest offset remembered
	done     map[recID]bool
	returned map[recID]error
}

// table is a compiled TableConfig.
type table struct {
	key template
}

// Stats are counters of what the handler did since it was created.
type Stats struct {
	// Published counts messages sent (again after a retry), Confirmed those the
	// broker confirmed, Returned mandatory messages it returned as unroutable,
	// Nacked those it refused.
	Published, Confirmed, Returned, Nacked uint64
	// Retried counts in-handler retries (broker down, channel or connection
	// closed, nacks, confirm timeouts).
	Retried uint64
	// Skipped counts records of tables no rule matches, tombstones that follow
	// their delete, lone tombstones in the canal-json format, and records
	// confirmed in an earlier attempt of the same batch.
	Skipped uint64
}

// New builds a Handler from cfg (validated here). It connects lazily, on the
// first batch. log may be nil.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if u, err := url.Parse(cfg.URL); err == nil {
		tc := cfg.TLS
		if u.Scheme == "amqps" {
			tc.Enabled = true // amqps verifies with the system's roots by default
		}
		tlsconfig.WarnPlaintext(log, "rabbitmq", u.Host, "url (amqps://) and tls", &tc)
	}
	h := &Handler{cfg: cfg, log: log.With("handler", cfg.Name),
		parts: map[partKey]*partMemory{}, lastDel: map[partKey]string{}}
	for _, tc := range cfg.Tables {
		rk := tc.RoutingKey
		if rk == "" {
			rk = cfg.RoutingKey
		}
		t, err := parseTemplate(rk)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		h.tables.Add(tc.Match, &table{key: t})
	}
	return h, nil
}

// Name returns Config.Name.
func (h *Handler) Name() string { return h.cfg.Name }

// TablePatterns returns the configured table patterns, for consumer.Tables.
func (h *Handler) TablePatterns() []string { return h.cfg.TablePatterns() }

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{Published: h.published.Load(), Confirmed: h.confirmed.Load(), Returned: h.returned.Load(),
		Nacked: h.nacked.Load(), Retried: h.retried.Load(), Skipped: h.skipped.Load()}
}

// Close closes the connection to the broker.
func (h *Handler) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.idle = nil
	if h.conn == nil {
		return nil
	}
	err := h.conn.Close()
	h.conn = nil
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}

func (h *Handler) table(name string) *table {
	t, _ := h.tables.Lookup(name)
	return t
}

// pending is one message to publish.
type pending struct {
	rec *consumer.Record
	id  recID
	key string // routing key
	msg amqp.Publishing
}

// Handle publishes the batch's records in order, each as one persistent message,
// and returns nil once the broker confirmed every one: only then does the Runner
// commit the batch's offsets, so every change reaches the broker at least once.
// Consumers drop duplicates by kanal.key and kanal.seq (docs/rabbitmq.md).
//
// When the broker is down, a channel or the connection closes, the broker nacks
// a message or a confirmation does not come within ConfirmTimeout, the messages
// not yet confirmed are published again, in their order, after a backoff
// (Config.Retry); when attempts run out Handle returns a plain error and the
// Runner retries. A mandatory message the broker returns (no queue bound for its
// routing key) fails the batch with a consumer.Permanent error wrapping
// ErrUnroutable and naming table, key, offset, exchange, routing key and the
// broker's reason, as does a record that cannot be published at all: the Runner
// dead-letters that record. While the Runner splits such a batch, records the
// broker already confirmed are not published again.
func (h *Handler) Handle(ctx context.Context, b consumer.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	pk := partKey{b.Topic, b.Partition}
	h.mu.Lock()
	mem := h.parts[pk]
	if mem != nil && b.Records[0].Offset > mem.upTo {
		delete(h.parts, pk)
		mem = nil
	}
	prevDel := h.lastDel[pk]
	h.mu.Unlock()

	msgs := make([]pending, 0, len(b.Records))
	var skipped uint64
	for i := range b.Records {
		rec := &b.Records[i]
		id := recID{rec.Offset, rec.Row}
		if mem != nil {
			if err := mem.returned[id]; err != nil {
				return err
			}
			if mem.done[id] {
				skipped++
				continue
			}
		}
		t := h.table(rec.Table)
		if t == nil {
			skipped++
			continue
		}
		if rec.Tombstone {
			if follows(b.Records, i, prevDel) {
				skipped++
				continue
			}
			if h.cfg.Format == FormatCanalJSON {
				// Canal has no message for "this key is gone" without the row.
				h.log.WarnContext(ctx, "lone tombstone not published: canal-json cannot carry a delete without its row",
					"topic", b.Topic, "partition", b.Partition, "key", rec.Key, "offset", rec.Offset)
				skipped++
				continue
			}
		}
		msg, key, err := h.message(rec, &t.key)
		if err != nil {
			return consumer.Permanent(fmt.Errorf("rabbitmq sink: %s: %w", describe(b, rec), err))
		}
		msgs = append(msgs, pending{rec: rec, id: id, key: key, msg: msg})
	}
	h.skipped.Add(skipped)
	if err := h.publishAll(ctx, b, msgs); err != nil {
		return err
	}
	h.endBatch(pk, b)
	return nil
}

// follows reports whether the tombstone at recs[i] directly follows the delete
// of its key, in this batch or as the end of the previous one.
func follows(recs []consumer.Record, i int, prevDel string) bool {
	if i == 0 {
		return prevDel != "" && prevDel == recs[0].Key
	}
	p := &recs[i-1]
	return !p.Tombstone && p.Op == schemas.OpDelete && p.Key == recs[i].Key
}

func (h *Handler) endBatch(pk partKey, b consumer.Batch) {
	lr := &b.Records[len(b.Records)-1]
	h.mu.Lock()
	defer h.mu.Unlock()
	if !lr.Tombstone && lr.Op == schemas.OpDelete {
		h.lastDel[pk] = lr.Key
	} else {
		delete(h.lastDel, pk)
	}
}

// describe names a record for errors: topic, partition, table, key and offset.
func describe(b consumer.Batch, rec *consumer.Record) string {
	return fmt.Sprintf("%s/%d: table %s, key %q, offset %d", b.Topic, b.Partition, rec.Table, rec.Key, rec.Offset)
}

// publishAll publishes msgs until every one is confirmed or returned, retrying
// with backoff. It remembers for the partition what it got done when it fails.
func (h *Handler) publishAll(ctx context.Context, b consumer.Batch, msgs []pending) error {
	todo := msgs
	backoff := h.cfg.Retry.Backoff()
	var done []recID
	var lastErr error
	for attempt := 1; ; attempt++ {
		rest, ok, err := h.attempt(ctx, todo)
		done = append(done, ok...)
		var ret *returnedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ret):
			h.remember(b, done, ret)
			return consumer.Permanent(fmt.Errorf("rabbitmq sink: %s: %w", describe(b, ret.rec), err))
		case ctx.Err() != nil:
			h.remember(b, done, nil)
			return ctx.Err()
		}
		todo, lastErr = rest, err
		if attempt >= h.cfg.Retry.MaxAttempts {
			break
		}
		h.retried.Add(1)
		h.log.WarnContext(ctx, "publish failed; retrying", "topic", b.Topic, "partition", b.Partition,
			"unconfirmed", len(todo), "attempt", attempt, "wait", backoff.Next(), "err", err)
		if err := backoff.Sleep(ctx); err != nil {
			h.remember(b, done, nil)
			return err
		}
	}
	h.remember(b, done, nil)
	return fmt.Errorf("rabbitmq sink: %s: %d of %d messages unconfirmed after %d attempts: %w",
		describe(b, todo[0].rec), len(todo), len(msgs), h.cfg.Retry.MaxAttempts, lastErr)
}

// remember stores what a failed batch got done (see Handler.parts).
func (h *Handler) remember(b consumer.Batch, done []recID, ret *returnedError) {
	if len(done) == 0 && ret == nil {
		return
	}
	pk := partKey{b.Topic, b.Partition}
	h.mu.Lock()
	defer h.mu.Unlock()
	mem := h.parts[pk]
	if mem == nil {
		mem = &partMemory{done: map[recID]bool{}, returned: map[recID]error{}}
		h.parts[pk] = mem
	}
	mem.upTo = max(mem.upTo, b.Records[len(b.Records)-1].Offset)
	for _, id := range done {
		mem.done[id] = true
	}
	if ret != nil {
		mem.returned[recID{ret.rec.Offset, ret.rec.Row}] = consumer.Permanent(fmt.Errorf("rabbitmq sink: %s: %w", describe(b, ret.rec), ret))
	}
}

// returnedError is a mandatory message the broker returned.
type returnedError struct {
	rec *consumer.Record
	r   amqp.Return
}

func (e *returnedError) Error() string {
	return fmt.Sprintf("%v: exchange %q, routing key %q: %d %s", ErrUnroutable, e.r.Exchange, e.r.RoutingKey, e.r.ReplyCode, e.r.ReplyText)
}

func (e *returnedError) Unwrap() error { return ErrUnroutable }

// attempt publishes msgs in windows on one channel and waits for each window's
// confirmations. It returns the messages still to publish (nacked, unconfirmed,
// and those after a failure), the ids of those confirmed, and why it stopped.
func (h *Handler) attempt(ctx context.Context, msgs []pending) (rest []pending, ok []recID, err error) {
	pc, err := h.channel(ctx)
	if err != nil {
		return msgs, nil, err
	}
	healthy := false
	defer func() { h.release(pc, healthy) }()
	for start := 0; start < len(msgs); start += h.cfg.Window {
		win := msgs[start:min(start+h.cfg.Window, len(msgs))]
		dcs := make([]*amqp.DeferredConfirmation, 0, len(win))
		var perr error
		for i := range win {
			m := &win[i]
			dc, err := pc.ch.PublishWithDeferredConfirmWithContext(ctx, h.cfg.Exchange, m.key, h.cfg.Mandatory, false, m.msg)
			if err != nil {
				perr = fmt.Errorf("publish: %w", err)
				break
			}
			h.published.Add(1)
			dcs = append(dcs, dc)
		}
		// Wait for what was published, even after a failure: some of it may be
		// confirmed and need not go again.
		cctx, cancel := context.WithTimeout(ctx, h.cfg.ConfirmTimeout)
		acked := make([]bool, len(dcs))
		for i, dc := range dcs {
			a, werr := dc.WaitContext(cctx)
			if werr != nil {
				if perr == nil {
					perr = fmt.Errorf("no confirmation within %v: %w", h.cfg.ConfirmTimeout, werr)
				}
				break
			}
			acked[i] = a
		}
		cancel()
		// A return comes before its message's ack; the returns channel holds a
		// window's worth, so every return of the acked messages is in it now.
		returned := pc.drainReturns()
		var failed []pending
		var ret *returnedError
		for i := range win {
			m := &win[i]
			if i >= len(dcs) || !acked[i] {
				failed = append(failed, *m)
				continue
			}
			if r, isRet := returned[returnKey(m.msg.MessageId, m.rec.Key)]; isRet {
				h.returned.Add(1)
				if ret == nil {
					ret = &returnedError{rec: m.rec, r: r}
				}
				failed = append(failed, *m)
				continue
			}
			h.confirmed.Add(1)
			ok = append(ok, m.id)
		}
		if ret != nil {
			healthy = !pc.ch.IsClosed()
			return append(failed, msgs[start+len(win):]...), ok, ret
		}
		if len(failed) > 0 || perr != nil {
			if perr == nil {
				n := uint64(0)
				for i := range dcs {
					if !acked[i] {
						n++
					}
				}
				h.nacked.Add(n)
				perr = fmt.Errorf("the broker nacked %d messages", n)
				healthy = !pc.ch.IsClosed()
			}
			if pc.ch.IsClosed() {
				perr = fmt.Errorf("%w (channel closed: %v)", perr, pc.closeReason())
			}
			return append(failed, msgs[start+len(win):]...), ok, perr
		}
	}
	healthy = true
	return nil, ok, nil
}

func returnKey(messageID, key string) string { return messageID + "\x00" + key }

// pubChannel is a channel in confirm mode with its returns.
type pubChannel struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
	closed  chan *amqp.Error
}

// drainReturns takes every return the channel got so far.
func (pc *pubChannel) drainReturns() map[string]amqp.Return {
	out := map[string]amqp.Return{}
	for {
		select {
		case r, ok := <-pc.returns:
			if !ok {
				return out
			}
			key, _ := r.Headers[HeaderKey].(string)
			out[returnKey(r.MessageId, key)] = r
		default:
			return out
		}
	}
}

func (pc *pubChannel) closeReason() string {
	select {
	case e, ok := <-pc.closed:
		if ok && e != nil {
			return e.Error()
		}
	default:
	}
	return "closed"
}

// channel returns an idle channel, or opens one (connecting first when there is
// no open connection).
func (h *Handler) channel(ctx context.Context) (*pubChannel, error) {
	h.mu.Lock()
	for len(h.idle) > 0 {
		pc := h.idle[len(h.idle)-1]
		h.idle = h.idle[:len(h.idle)-1]
		if !pc.ch.IsClosed() && !pc.conn.IsClosed() {
			h.mu.Unlock()
			return pc, nil
		}
	}
	conn := h.conn
	h.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		var err error
		if conn, err = h.connect(ctx); err != nil {
			return nil, err
		}
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		ch.Close()
		return nil, fmt.Errorf("confirm mode: %w", err)
	}
	pc := &pubChannel{conn: conn, ch: ch, returns: make(chan amqp.Return, h.cfg.Window+16), closed: make(chan *amqp.Error, 1)}
	ch.NotifyReturn(pc.returns)
	ch.NotifyClose(pc.closed)
	return pc, nil
}

// release puts a channel back for the next batch, or closes it.
func (h *Handler) release(pc *pubChannel, healthy bool) {
	// Returns of an earlier window that came after we looked must not be taken
	// for the next batch's.
	pc.drainReturns()
	if !healthy || pc.ch.IsClosed() {
		_ = pc.ch.Close()
		return
	}
	h.mu.Lock()
	h.idle = append(h.idle, pc)
	h.mu.Unlock()
}

// connect dials the broker and declares the exchange; concurrent callers share
// one connection.
func (h *Handler) connect(ctx context.Context) (*amqp.Connection, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conn != nil && !h.conn.IsClosed() {
		return h.conn, nil
	}
	dctx, cancel := context.WithTimeout(ctx, h.cfg.DialTimeout)
	defer cancel()
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName("kanal-" + h.cfg.Name)
	tc, err := h.cfg.TLS.Client("tls")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var auth []amqp.Authentication
	if h.cfg.PasswordFile != "" {
		u, _ := url.Parse(h.cfg.URL) // Validate parsed it
		pw, err := secret.Password("password", "", h.cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		auth = []amqp.Authentication{&amqp.PlainAuth{Username: u.User.Username(), Password: pw}}
	}
	conn, err := amqp.DialConfig(h.cfg.URL, amqp.Config{
		Heartbeat:       h.cfg.Heartbeat,
		Properties:      props,
		TLSClientConfig: tc,
		SASL:            auth,
		Dial: func(network, addr string) (net.Conn, error) {
			var c net.Conn
			var err error
			if strings.HasPrefix(h.cfg.URL, "amqps:") {
				var d net.Dialer // amqp091 runs the TLS handshake on this connection
				c, err = d.DialContext(dctx, network, addr)
			} else {
				// Explains a broker that hangs up on plaintext: its port speaks TLS.
				d := &tlsconfig.Dialer{Server: "rabbitmq " + h.cfg.Redacted(), Field: "url (amqps://) and tls"}
				c, err = d.DialContext(dctx, network, addr)
			}
			if err != nil {
				return nil, err
			}
			// The deadline covers the handshake; amqp091 clears it afterwards.
			if dl, ok := dctx.Deadline(); ok {
				_ = c.SetDeadline(dl)
			}
			return c, nil
		},
	})
	if err != nil {
		// amqp091's errors name the address, never the password; the URL is
		// logged redacted.
		if te := tlsconfig.Explain("rabbitmq "+h.cfg.Redacted(), "tls", err); te != err {
			return nil, te
		}
		return nil, fmt.Errorf("connect to %s: %w", h.cfg.Redacted(), err)
	}
	if h.cfg.Declare {
		ch, err := conn.Channel()
		if err == nil {
			err = ch.ExchangeDeclare(h.cfg.Exchange, h.cfg.ExchangeType, true, false, false, false, nil)
			if err == nil {
				ch.Close()
			}
		}
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("declare exchange %q (%s): %w", h.cfg.Exchange, h.cfg.ExchangeType, err)
		}
	}
	h.log.InfoContext(ctx, "connected", "url", h.cfg.Redacted(), "exchange", h.cfg.Exchange)
	h.conn = conn
	h.idle = nil
	return conn, nil
}

// PublishedSeq parses a message's kanal.seq header (0 when missing), for
// consumers that dedupe.
func PublishedSeq(headers amqp.Table) uint64 {
	s, _ := headers[schemas.HeaderSeq].(string)
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}

// Ping connects to the broker (declaring the exchange when Config.Declare is set),
// for `kanal config check --connect`.
func (h *Handler) Ping(ctx context.Context) error {
	_, err := h.connect(ctx)
	return err
}
