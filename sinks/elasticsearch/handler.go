package essink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/internal/sinkconf"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// errValue is wrapped by errors about a record the sink can never index; they
// are permanent.
var errValue = errors.New("cannot index record")

// ErrRejected is wrapped by the permanent error of a document the cluster
// refused (a mapping or parse error): the error names the index, the id and the
// cluster's reason.
var ErrRejected = errors.New("document rejected by the cluster")

// Handler indexes change records in Elasticsearch or OpenSearch with the _bulk
// API. It implements consumer.Handler and is safe for concurrent use by the
// Runner's partitions.
type Handler struct {
	cfg   Config
	log   *slog.Logger
	c     *client
	rules sinkconf.Rules[*rule]
	// children lists, per parent table, the rules joined into it.
	children map[string][]*rule

	tmu sync.RWMutex
	// pkCols are the key columns of the tables seen, for routing a child's lone
	// tombstone to its parent.
	pkCols map[string][]string

	mu      sync.Mutex
	lastDel map[partKey]string

	indexed, deleted, stale, conflicts, retried, skipped, truncates atomic.Uint64
}

type partKey struct {
	topic     string
	partition int32
}

// rule is a compiled TableConfig.
type rule struct {
	index   indexTemplate
	dateCol string
	dateFmt string
	cols    sinkconf.Columns
	join    *JoinConfig
	kind    string
	names   sync.Map // table → index name
}

// Stats are counters of what the handler did since it was created.
type Stats struct {
	// Indexed and Deleted count documents written and deleted (joined documents:
	// written or deleted as a whole).
	Indexed, Deleted uint64
	// Stale counts changes the cluster refused as older than the document's
	// version (409 with external versioning) and joined changes older than the
	// rows already in the document: replays, redeliveries, late batches.
	Stale uint64
	// Conflicts counts joined documents written concurrently by another writer
	// and read again.
	Conflicts uint64
	// Retried counts in-handler retries (429, 5xx, the cluster unreachable).
	Retried uint64
	// Skipped counts records of tables no rule matches, tombstones that follow
	// their delete, child rows without a parent key, and lone tombstones that
	// cannot be routed (see docs/elasticsearch.md).
	Skipped uint64
	// Truncates counts truncate records applied (one per partition of the
	// table's topic); the documents they deleted count in Deleted.
	Truncates uint64
}

// New builds a Handler from cfg (validated here). It connects lazily. log may be
// nil.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c, err := newClient(&cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for _, s := range cfg.URLs {
		if u, err := url.Parse(s); err == nil {
			tc := cfg.TLS
			if u.Scheme == "https" {
				tc.Enabled = true // https verifies with the system's roots by default
			}
			tlsconfig.WarnPlaintext(log, "elasticsearch", u.Host, "urls (https://) and tls", &tc)
		}
	}
	h := &Handler{cfg: cfg, log: log.With("handler", cfg.Name), c: c, children: map[string][]*rule{},
		pkCols: map[string][]string{}, lastDel: map[partKey]string{}}
	for _, tc := range cfg.Tables {
		index := tc.Index
		if index == "" {
			index = "{db}.{table}"
		}
		it, err := parseIndexTemplate(index)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		r := &rule{index: it, dateCol: tc.DateColumn, dateFmt: tc.DateFormat, cols: tc.Columns.Compile(), join: tc.Join}
		if r.dateCol != "" && r.dateFmt == "" {
			r.dateFmt = "2006.01.02"
		}
		if r.join != nil {
			r.kind = r.join.Kind
			if r.kind == "" {
				r.kind = JoinArray
			}
			h.children[r.join.Parent] = append(h.children[r.join.Parent], r)
		}
		h.rules.Add(tc.Match, r)
	}
	return h, nil
}

// Name returns Config.Name.
func (h *Handler) Name() string { return h.cfg.Name }

// TablePatterns returns the configured table patterns, for consumer.Tables.
func (h *Handler) TablePatterns() []string { return h.cfg.TablePatterns() }

// Stats returns the handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{Indexed: h.indexed.Load(), Deleted: h.deleted.Load(), Stale: h.stale.Load(),
		Conflicts: h.conflicts.Load(), Retried: h.retried.Load(), Skipped: h.skipped.Load(), Truncates: h.truncates.Load()}
}

// Close releases idle connections.
func (h *Handler) Close() error {
	h.c.http.CloseIdleConnections()
	return nil
}

func (h *Handler) rule(table string) *rule {
	r, _ := h.rules.Lookup(table)
	return r
}

// Index returns the index a table's documents go to, without the date suffix
// of date-partitioned tables; false when no rule indexes the table (no rule
// matches, or its rows are joined into another table's documents).
func (h *Handler) Index(table string) (string, bool) {
	r := h.rule(table)
	if r == nil || r.join != nil {
		return "", false
	}
	return r.indexName(table), true
}

func (r *rule) indexName(table string) string {
	if v, ok := r.names.Load(table); ok {
		return v.(string)
	}
	name := r.index.render(table)
	r.names.Store(table, name)
	return name
}

// Handle indexes a batch with one or more _bulk requests.
//
// A table's rows are documents with the primary key as id ("7", composite keys
// "1,abc" as in the record key). They are written with the change's sequence as
// external version (version_type=external), deletes too: the cluster applies a
// change only when it is newer than the document, so replays, redeliveries and
// late batches of another consumer never move a document backwards; it answers
// 409 for the others, which count as stale. Rows of a child table joined into a
// parent are merged into the parent's document with a read (_mget) and a write
// guarded by if_seq_no/if_primary_term, keeping each row's version in the
// document's "__kanal" field (docs/elasticsearch.md).
//
// Items the cluster rejects for load (429) or fails (5xx), and requests that do
// not get through, are sent again after a backoff (Config.Retry); then Handle
// returns a plain error and the Runner retries. A document the cluster refuses
// (a mapping or parse error) fails the batch with a consumer.Permanent error
// wrapping ErrRejected that names table, key, offset, index, id and the
// cluster's reason, after the batch's other documents were written: the Runner
// dead-letters that record (its split writes the others again, which the
// versions make harmless). So does a record the sink can never index.
//
// A truncate record is applied after the records before it and before those
// after it: every document of its table older than the truncate is deleted
// (see truncate).
func (h *Handler) Handle(ctx context.Context, b consumer.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	if i := firstTruncate(b.Records); i >= 0 {
		return h.handleTruncates(ctx, b, i)
	}
	pk := partKey{b.Topic, b.Partition}
	h.mu.Lock()
	prevDel := h.lastDel[pk]
	h.mu.Unlock()
	nextSeq := make([]uint64, len(b.Records))
	for i, next := len(b.Records)-1, uint64(0); i >= 0; i-- {
		nextSeq[i] = next
		if r := &b.Records[i]; !r.Tombstone && r.Seq > 0 {
			next = r.Seq
		}
	}
	var plain []action
	var joined []jop
	var skipped uint64
	for i := range b.Records {
		rec := &b.Records[i]
		r := h.rule(rec.Table)
		if r == nil {
			skipped++
			continue
		}
		if rec.Tombstone && follows(b.Records, i, prevDel) {
			skipped++
			continue
		}
		if rec.Change != nil {
			h.learnKey(rec.Table, rec.Change)
		}
		ver := rec.Seq
		if rec.Tombstone && ver == 0 && nextSeq[i] > 1 {
			// An older tombstone without its delete's sequence: a partition is in
			// sequence order, so the next change's sequence minus one versions
			// the delete as well as its own would.
			ver = nextSeq[i] - 1
		}
		var err error
		switch {
		case r.join != nil:
			var ops []jop
			ops, err = h.childOps(rec, r, ver)
			joined = append(joined, ops...)
			if ops == nil && err == nil {
				skipped++
			}
		case len(h.children[rec.Table]) > 0:
			var op jop
			op, err = h.parentOp(rec, r, ver)
			joined = append(joined, op)
		default:
			var acts []action
			acts, err = h.actions(rec, r, ver)
			plain = append(plain, acts...)
			if acts == nil && err == nil {
				skipped++
			}
		}
		if err != nil {
			h.log.WarnContext(ctx, "cannot index change", "topic", b.Topic, "partition", b.Partition,
				"table", rec.Table, "key", rec.Key, "offset", rec.Offset, "err", err)
			return consumer.Permanent(fmt.Errorf("elasticsearch sink: %s: %w", describe(b, rec), err))
		}
	}
	h.skipped.Add(skipped)
	var perm error
	if len(plain) > 0 {
		if err := h.sendPlain(ctx, b, plain); err != nil {
			if !consumer.IsPermanent(err) {
				return err
			}
			perm = err
		}
	}
	if len(joined) > 0 {
		if err := h.applyJoined(ctx, b, joined); err != nil {
			if !consumer.IsPermanent(err) {
				return err
			}
			perm = cmpErr(perm, err)
		}
	}
	if perm != nil {
		return perm
	}
	lr := &b.Records[len(b.Records)-1]
	h.mu.Lock()
	if !lr.Tombstone && lr.Op == schemas.OpDelete {
		h.lastDel[pk] = lr.Key
	} else {
		delete(h.lastDel, pk)
	}
	h.mu.Unlock()
	return nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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

// describe names a record for errors: topic, partition, table, key and offset.
func describe(b consumer.Batch, rec *consumer.Record) string {
	return fmt.Sprintf("%s/%d: table %s, key %q, offset %d", b.Topic, b.Partition, rec.Table, rec.Key, rec.Offset)
}

// learnKey remembers a table's key columns.
func (h *Handler) learnKey(table string, c *schemas.Change) {
	h.tmu.RLock()
	_, ok := h.pkCols[table]
	h.tmu.RUnlock()
	if ok {
		return
	}
	cols := c.KeyColumns()
	if len(cols) == 0 {
		// Tables without a primary key are keyed by every column.
		for _, col := range c.Columns {
			cols = append(cols, col.Name)
		}
	}
	h.tmu.Lock()
	h.pkCols[table] = cols
	h.tmu.Unlock()
}

// docID is a record's document id: its key's primary-key part.
func docID(rec *consumer.Record) (string, error) {
	id := strings.TrimPrefix(rec.Key, rec.Table+":")
	if len(id) > 512 {
		return "", fmt.Errorf("%w: document id of %d bytes (the limit is 512)", errValue, len(id))
	}
	return id, nil
}

// action is one _bulk action of a plain (not joined) table.
type action struct {
	rec   *consumer.Record
	index string
	id    string
	del   bool
	ver   uint64 // external version; 0: unversioned delete
	meta  []byte // the action line
	doc   []byte // the source line; nil for deletes
}

// actions builds the _bulk actions of a record of a plain table: an index (and,
// when a date-partitioned row moves to another period, a delete from the old
// index) or a delete.
func (h *Handler) actions(rec *consumer.Record, r *rule, ver uint64) ([]action, error) {
	id, err := docID(rec)
	if err != nil {
		return nil, err
	}
	if ver > math.MaxInt64 {
		return nil, fmt.Errorf("%w: sequence %d exceeds the largest external version", errValue, ver)
	}
	base := r.indexName(rec.Table)
	if rec.Tombstone {
		if r.dateCol != "" {
			// Without the row there is no date, so no index to delete from.
			h.log.Warn("lone tombstone of a date-partitioned table skipped: its index is unknown",
				"table", rec.Table, "key", rec.Key, "offset", rec.Offset)
			return nil, nil
		}
		return []action{newAction(rec, base, id, true, ver, nil)}, nil
	}
	c := rec.Change
	if c == nil {
		return nil, fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	if ver == 0 {
		return nil, fmt.Errorf("%w: change has no sequence (kanal.seq), so it cannot be versioned", errValue)
	}
	indexOf := func(row map[string]any) (string, error) {
		if r.dateCol == "" {
			return base, nil
		}
		s, err := r.dateSuffix(row)
		if err != nil {
			return "", err
		}
		return base + "-" + s, nil
	}
	switch c.Op {
	case schemas.OpDelete:
		idx, err := indexOf(c.Before)
		if err != nil {
			return nil, err
		}
		return []action{newAction(rec, idx, id, true, ver, nil)}, nil
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
	default:
		return nil, fmt.Errorf("%w: unknown operation %q", errValue, c.Op)
	}
	if c.After == nil {
		return nil, fmt.Errorf("%w: %s change without an after image", errValue, c.Op)
	}
	idx, err := indexOf(c.After)
	if err != nil {
		return nil, err
	}
	doc, err := r.document(c, c.After)
	if err != nil {
		return nil, err
	}
	acts := []action{newAction(rec, idx, id, false, ver, doc)}
	if r.dateCol != "" && c.Before != nil {
		if old, err := indexOf(c.Before); err == nil && old != idx {
			acts = append(acts, newAction(rec, old, id, true, ver, nil))
		}
	}
	return acts, nil
}

func newAction(rec *consumer.Record, index, id string, del bool, ver uint64, doc []byte) action {
	a := action{rec: rec, index: index, id: id, del: del, ver: ver, doc: doc}
	m := make([]byte, 0, 64+len(index)+len(id))
	if del {
		m = append(m, `{"delete":{"_index":`...)
	} else {
		m = append(m, `{"index":{"_index":`...)
	}
	m = schemas.AppendJSONString(m, index)
	m = append(m, `,"_id":`...)
	m = schemas.AppendJSONString(m, id)
	if ver > 0 {
		m = append(m, `,"version":`...)
		m = strconv.AppendUint(m, ver, 10)
		m = append(m, `,"version_type":"external"`...)
	}
	a.meta = append(m, "}}"...)
	return a
}

// dateSuffix formats the row's date column for the index name.
func (r *rule) dateSuffix(row map[string]any) (string, error) {
	v, ok := row[r.dateCol]
	if !ok {
		return "", fmt.Errorf("%w: date column %q is not in the row", errValue, r.dateCol)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: date column %q holds %s, not a date", errValue, r.dateCol, describeValue(v))
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return strings.ToLower(t.Format(r.dateFmt)), nil
		}
	}
	return "", fmt.Errorf("%w: date column %q holds %q, not a date", errValue, r.dateCol, s)
}

func describeValue(v any) string {
	if v == nil {
		return "NULL"
	}
	return fmt.Sprintf("a %T", v)
}

// document renders a row as a document source: the indexed columns in table
// order, values as in the kanal envelope (integers exact, DECIMAL as strings,
// bytes as base64).
func (r *rule) document(c *schemas.Change, row map[string]any) ([]byte, error) {
	doc := make([]byte, 0, 32+32*len(c.Columns))
	doc = append(doc, '{')
	first := true
	for _, col := range c.Columns {
		name, ok := r.cols.Name(col.Name)
		if !ok {
			continue
		}
		if strings.HasPrefix(name, "_") {
			return nil, fmt.Errorf("%w: column %q: field names starting with '_' are reserved; rename it (columns.rename)", errValue, col.Name)
		}
		v := row[col.Name]
		if !jsonValueOK(v) {
			return nil, fmt.Errorf("%w: column %s: value of Go type %T", errValue, col.Name, v)
		}
		if !first {
			doc = append(doc, ',')
		}
		first = false
		doc = schemas.AppendJSONString(doc, name)
		doc = append(doc, ':')
		doc = schemas.AppendJSONValue(doc, v)
	}
	return append(doc, '}'), nil
}

// jsonValueOK reports whether v is one of the value types kanal's decoders
// produce.
func jsonValueOK(v any) bool {
	switch v.(type) {
	case nil, int64, uint64, int, float32, float64, schemas.Decimal, string, []byte, bool:
		return true
	}
	return false
}

// sendPlain sends the actions in _bulk requests, retrying items and requests
// that failed for load or server errors.
func (h *Handler) sendPlain(ctx context.Context, b consumer.Batch, acts []action) error {
	todo := make([]int, len(acts))
	for i := range todo {
		todo[i] = i
	}
	backoff := h.cfg.Retry.Backoff()
	var perm error
	for attempt := 1; ; attempt++ {
		var again []int
		var lastErr error
		for _, chunk := range h.chunks(acts, todo) {
			body := make([]byte, 0, 256*len(chunk))
			for _, i := range chunk {
				body = append(append(body, acts[i].meta...), '\n')
				if acts[i].doc != nil {
					body = append(append(body, acts[i].doc...), '\n')
				}
			}
			res, err := h.c.bulk(ctx, body, len(chunk))
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !retryable(err) {
					return fmt.Errorf("elasticsearch sink: %s: _bulk: %w", describe(b, acts[chunk[0]].rec), err)
				}
				again, lastErr = append(again, chunk...), err
				continue
			}
			for j, i := range chunk {
				a, r := &acts[i], &res[j]
				switch {
				case r.Status/100 == 2, a.del && r.Status == http.StatusNotFound:
					if a.del {
						h.deleted.Add(1)
					} else {
						h.indexed.Add(1)
					}
				case r.Status == http.StatusConflict && a.ver > 0:
					h.stale.Add(1)
				case r.Status == http.StatusTooManyRequests || r.Status >= 500:
					again = append(again, i)
					lastErr = fmt.Errorf("index %s, id %q: status %d: %s", a.index, a.id, r.Status, r.Error)
				default:
					if perm == nil {
						perm = consumer.Permanent(fmt.Errorf("elasticsearch sink: %s: %w: index %s, id %q: status %d: %s",
							describe(b, a.rec), ErrRejected, a.index, a.id, r.Status, r.Error))
					}
				}
			}
		}
		if len(again) == 0 {
			return perm
		}
		if attempt >= h.cfg.Retry.MaxAttempts {
			return fmt.Errorf("elasticsearch sink: %s: %d actions failed after %d attempts: %w",
				describe(b, acts[again[0]].rec), len(again), attempt, lastErr)
		}
		h.retried.Add(1)
		h.log.WarnContext(ctx, "bulk items failed; retrying", "topic", b.Topic, "partition", b.Partition,
			"actions", len(again), "attempt", attempt, "wait", backoff.Next(), "err", lastErr)
		if err := backoff.Sleep(ctx); err != nil {
			return err
		}
		todo = again
	}
}

// chunks splits the actions at todo's indexes into requests within
// BulkMaxActions and BulkMaxBytes.
func (h *Handler) chunks(acts []action, todo []int) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for _, i := range todo {
		n := len(acts[i].meta) + len(acts[i].doc) + 2
		if len(cur) > 0 && (len(cur) >= h.cfg.BulkMaxActions || size+n > h.cfg.BulkMaxBytes) {
			out = append(out, cur)
			cur, size = nil, 0
		}
		cur = append(cur, i)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Ping asks each URL for the cluster's main endpoint with the handler's
// credentials, for `kanal config check --connect`.
func (h *Handler) Ping(ctx context.Context) error {
	for _, u := range h.c.urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/", nil)
		if err != nil {
			return err
		}
		if h.c.auth != "" {
			req.Header.Set("Authorization", h.c.auth)
		}
		resp, err := h.c.http.Do(req)
		if err != nil {
			return tlsconfig.Explain("elasticsearch "+u, "tls", err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
		}
	}
	return nil
}
