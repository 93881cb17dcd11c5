package redissink

import (
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// opKind is what a row change does to its row.
type opKind uint8

const (
	// opUpsert writes the row.
	opUpsert opKind = iota + 1
	// opDelete deletes the row and leaves a tombstone holding the version.
	opDelete
	// opDeleteAny deletes the row whatever version Redis holds, and leaves no
	// tombstone: a lone tombstone record without a later change of its row in the
	// batch, whose version is not known (see build).
	opDeleteAny
)

// code is the kind as applyScript takes it.
func (k opKind) code() string {
	switch k {
	case opUpsert:
		return "u"
	case opDelete:
		return "d"
	default:
		return "x"
	}
}

// layout is how a table's rows are stored.
type layout uint8

const (
	layoutHash layout = iota // one hash field per column
	layoutJSON               // one JSON string
)

// code is the layout as the scripts take it.
func (l layout) code() string {
	if l == layoutJSON {
		return "j"
	}
	return "h"
}

// op is one row change: what both write paths (applyScript's version-checked
// calls, the fenced transaction's plain commands) need to apply it.
type op struct {
	table  string
	key    string // row key in Redis
	tomb   string // its tombstone key
	recKey string // Kafka record key, for errors and logs
	inst   string
	// dropped: a later change of the same row in the batch supersedes it.
	dropped bool

	kind opKind
	ver  string // the version written: the change's sequence, in decimal
	// sets are the row's set memberships after the change, as netstrings (set
	// key, member, …); "" for a delete.
	sets string
	// values are what is written: hash field names and values (boxed once, see
	// storedNames), or the one JSON value. Empty for a delete.
	values []any
	// hset is the whole HSET command of a hash-layout upsert, values its tail:
	// queued as it is, without go-redis copying the arguments once more.
	hset []any

	rec *consumer.Record
	t   *table
	// prev is the newest change sequence before this record in its partition that
	// the handler saw (0: none), and low a lower bound of the record's own: its
	// sequence, or prev+1 for a tombstone whose delete is gone.
	prev, low uint64
	// slow: the fenced path cannot write this row with plain commands (a lone
	// tombstone, whose row's memberships only Redis knows) and runs the script.
	slow bool
	// checked: in this attempt of a fenced transaction the row goes through the
	// version-checked script (see watermark).
	checked bool
}

// scriptOp returns the kind and version applyScript applies o with. A lone
// tombstone without a change after it in the batch (opDeleteAny: delete whatever
// the row holds) is right after every earlier record of the partition was
// applied, but not when version-checking: Redis may hold a newer row. Its delete
// is newer than every change before it in the partition, so it is versioned with
// the newest of those the handler saw (o.prev): it deletes a row older than that
// and never a newer one; without one it deletes nothing.
func (o *op) scriptOp() (opKind, string) {
	if o.checked && o.kind == opDeleteAny {
		return opDelete, strconv.FormatUint(o.prev, 10)
	}
	return o.kind, o.ver
}

// build turns a record into a row change. next is the sequence of the first
// change after rec in its partition, when the batch has one.
func (h *Handler) build(t *table, rec *consumer.Record, next uint64, names *storedNames, strs *strBuf, args *anyBuf) (op, error) {
	o := op{table: rec.Table, key: t.prefix + rec.Key, recKey: rec.Key, rec: rec, t: t}
	o.inst = t.instance(o.key)
	o.tomb = strs.concat(h.r.cfg.TombstonePrefix, o.key)
	if rec.Tombstone {
		// A tombstone whose delete was compacted away (or is in an earlier batch).
		// Its delete's sequence d is not on it, but a partition is in sequence order
		// and all changes of a row are in one partition: with the next change's
		// sequence n, every change of this row before the tombstone is < d < n and
		// every one after it is >= n, so n-1 versions the delete as well as d would.
		// Without a next change the delete is applied whatever version Redis holds
		// (see docs/redis.md).
		o.kind, o.ver = opDeleteAny, "0"
		switch {
		case rec.Seq > 0:
			o.kind, o.ver = opDelete, strconv.FormatUint(rec.Seq, 10)
		case next > 1:
			o.kind, o.ver = opDelete, strconv.FormatUint(next-1, 10)
		}
		return o, nil
	}
	c := rec.Change
	if c == nil {
		return o, fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	if rec.Seq == 0 {
		return o, fmt.Errorf("%w: change has no sequence (kanal.seq), so the row cannot carry its version", errValue)
	}
	o.ver = strs.uint(rec.Seq)
	switch c.Op {
	case schemas.OpDelete:
		o.kind = opDelete
		return o, nil
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
		o.kind = opUpsert
	default:
		return o, fmt.Errorf("%w: unknown operation %q", errValue, c.Op)
	}
	row := c.After
	if row == nil {
		return o, fmt.Errorf("%w: %s change without an after image", errValue, c.Op)
	}
	pairs, err := t.memberships(rec, row)
	if err != nil {
		return o, err
	}
	o.sets = encodeMemberships(pairs)
	if t.layout == layoutJSON {
		v, err := t.appendJSON(make([]byte, 0, 64+32*len(c.Columns)), c, row, o.ver, o.sets)
		if err != nil {
			return o, err
		}
		o.values = []any{v}
		return o, nil
	}
	// Built in the reused scratch list, then copied to its exact length.
	o.hset = append(args.scratch[:0], "hset", o.key, FieldVersion, o.ver)
	var nulls []string
	var scratch []byte // for floats only: other values go as they are
	sn := names.of(t, c.Columns)
	for i, col := range c.Columns {
		if !sn.ok[i] {
			continue
		}
		name := sn.names[i]
		if isReserved(name) {
			return o, fmt.Errorf("%w: column %q has a reserved name; rename it (columns.rename)", errValue, col.Name)
		}
		v := row[col.Name]
		if v == nil {
			nulls = append(nulls, name)
			continue
		}
		hv, err := hashValue(v, &scratch)
		if err != nil {
			return o, fmt.Errorf("column %s: %w", col.Name, err)
		}
		o.hset = append(o.hset, sn.boxed[i], hv)
	}
	if len(nulls) > 0 {
		o.hset = append(o.hset, FieldNulls, EncodeNulls(nulls))
	}
	if o.sets != "" {
		o.hset = append(o.hset, FieldSets, o.sets)
	}
	args.scratch = o.hset
	o.hset = args.keep(o.hset)
	o.values = o.hset[2:]
	return o, nil
}

// strBuf holds the short strings one Handle call makes per row (tombstone keys,
// versions) in shared blocks instead of one allocation each. A block is never
// written again where a string points into it, and lives as long as any of them.
type strBuf struct{ b []byte }

// strBufBlock is the size of a block: a few dozen rows' strings.
const strBufBlock = 2048

// room makes room for n more bytes, in a new block if the current one is full.
func (a *strBuf) room(n int) {
	if cap(a.b)-len(a.b) < n {
		a.b = make([]byte, 0, max(strBufBlock, n))
	}
}

// done returns the bytes appended since start as a string.
func (a *strBuf) done(start int) string {
	if len(a.b) == start {
		return ""
	}
	return unsafe.String(&a.b[start], len(a.b)-start)
}

// concat returns x+y.
func (a *strBuf) concat(x, y string) string {
	if x == "" {
		return y
	}
	a.room(len(x) + len(y))
	start := len(a.b)
	a.b = append(append(a.b, x...), y...)
	return a.done(start)
}

// uint returns v in decimal.
func (a *strBuf) uint(v uint64) string {
	a.room(20)
	start := len(a.b)
	a.b = strconv.AppendUint(a.b, v, 10)
	return a.done(start)
}

// anyBuf holds the argument lists of one Handle call's HSETs in shared blocks
// instead of one allocation each. A list is built in scratch and then copied to
// a block at its exact length, so appends cannot reach the next one and no room is
// left unused in it; a copy is never written again: go-redis keeps a command's
// arguments until its reply is read, and a block lives as long as any list in it.
type anyBuf struct {
	b       []any
	scratch []any
}

// anyBufBlock is the size of a block in values (8 KiB): ~20 rows of nine columns,
// little left unused at the end of a batch.
const anyBufBlock = 512

// keep returns a copy of list in a block, its capacity its length.
func (a *anyBuf) keep(list []any) []any {
	n := len(list)
	if cap(a.b)-len(a.b) < n {
		a.b = make([]any, 0, max(anyBufBlock, n))
	}
	start := len(a.b)
	a.b = append(a.b, list...)
	return a.b[start : start+n : start+n]
}

// storedNames holds, within one Handle call, the stored field names of the last
// column list seen, boxed for the argument list once: a batch's changes of a table
// share their columns, and boxing every name of every row cost ~10% of the
// handler's CPU.
type storedNames struct {
	t     *table
	cols  []string
	names []string
	ok    []bool
	boxed []any
}

// of returns the stored names of cols for table t.
func (s *storedNames) of(t *table, cols []schemas.Column) *storedNames {
	if s.t == t && len(s.cols) == len(cols) {
		same := true
		for i := range cols {
			if cols[i].Name != s.cols[i] {
				same = false
				break
			}
		}
		if same {
			return s
		}
	}
	s.t = t
	s.cols, s.names, s.ok, s.boxed = s.cols[:0], s.names[:0], s.ok[:0], s.boxed[:0]
	for _, c := range cols {
		name, ok := t.stored(c.Name)
		s.cols = append(s.cols, c.Name)
		s.names = append(s.names, name)
		s.ok = append(s.ok, ok)
		s.boxed = append(s.boxed, name)
	}
	return s
}

// memberships returns the sets the row is in: set key, member, set key, member, ….
func (t *table) memberships(rec *consumer.Record, row map[string]any) ([]string, error) {
	if len(t.sets) == 0 || row == nil {
		return nil, nil
	}
	var out []string
	for _, s := range t.sets {
		k, ok, err := s.key.render(row)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var m string
		if s.member == nil {
			m = strings.TrimPrefix(rec.Key, rec.Table+":")
		} else if m, ok, err = s.member.render(row); err != nil {
			return nil, err
		} else if !ok {
			continue
		}
		out = append(out, k, m)
	}
	return out, nil
}

// encodeMemberships renders memberships as netstrings, as "__sets" stores them.
func encodeMemberships(pairs []string) string {
	var b []byte
	for _, s := range pairs {
		b = appendNetstring(b, s)
	}
	return string(b)
}

// appendJSON renders the row as the JSON layout stores it: "__v" first (the script
// reads it with a prefix match), the stored columns in table order, then "__sets".
func (t *table) appendJSON(dst []byte, c *schemas.Change, row map[string]any, ver, sets string) ([]byte, error) {
	dst = append(dst, `{"__v":`...)
	dst = append(dst, ver...)
	for _, col := range c.Columns {
		name, ok := t.stored(col.Name)
		if !ok {
			continue
		}
		if isReserved(name) {
			return nil, fmt.Errorf("%w: column %q has a reserved name; rename it (columns.rename)", errValue, col.Name)
		}
		dst = append(dst, ',')
		dst = schemas.AppendJSONString(dst, name)
		dst = append(dst, ':')
		var err error
		if dst, err = appendJSONValue(dst, row[col.Name]); err != nil {
			return nil, fmt.Errorf("column %s: %w", col.Name, err)
		}
	}
	if sets != "" {
		dst = append(dst, `,"__sets":`...)
		dst = schemas.AppendJSONString(dst, sets)
	}
	return append(dst, '}'), nil
}
