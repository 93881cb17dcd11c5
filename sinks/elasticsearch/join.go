package essink

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// docRef names a document.
type docRef struct{ index, id string }

type jopKind uint8

const (
	parentUpsert jopKind = iota
	parentDelete
	childUpsert
	childDelete
	// childTruncate deletes every child row of field older than ver.
	childTruncate
)

// jop is one change to a joined document: its parent row's, or one of its
// child rows'.
type jop struct {
	rec    *consumer.Record
	ref    docRef
	kind   jopKind
	ver    uint64 // 0: an unversioned delete (a lone tombstone without sequence)
	fields []field
	// child changes: the parent document's field, the child's key, its row
	field string
	ckey  string
	row   json.RawMessage
}

// field is one column of a parent row, rendered.
type field struct {
	name string
	val  json.RawMessage
}

// parentOp builds the change of a parent row to its document.
func (h *Handler) parentOp(rec *consumer.Record, r *rule, ver uint64) (jop, error) {
	id, err := docID(rec)
	if err != nil {
		return jop{}, err
	}
	op := jop{rec: rec, ref: docRef{r.indexName(rec.Table), id}, kind: parentDelete, ver: ver}
	if rec.Tombstone {
		return op, nil
	}
	c := rec.Change
	if c == nil {
		return op, fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	if ver == 0 {
		return op, fmt.Errorf("%w: change has no sequence (kanal.seq), so it cannot be versioned", errValue)
	}
	switch c.Op {
	case schemas.OpDelete:
		return op, nil
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
	default:
		return op, fmt.Errorf("%w: unknown operation %q", errValue, c.Op)
	}
	if c.After == nil {
		return op, fmt.Errorf("%w: %s change without an after image", errValue, c.Op)
	}
	op.kind = parentUpsert
	for _, col := range c.Columns {
		name, ok := r.cols.Name(col.Name)
		if !ok {
			continue
		}
		if strings.HasPrefix(name, "_") {
			return op, fmt.Errorf("%w: column %q: field names starting with '_' are reserved; rename it (columns.rename)", errValue, col.Name)
		}
		for _, cr := range h.children[rec.Table] {
			if cr.join.Field == name {
				return op, fmt.Errorf("%w: column %q is named like the join field %q; rename it (columns.rename)", errValue, col.Name, name)
			}
		}
		v := c.After[col.Name]
		if !jsonValueOK(v) {
			return op, fmt.Errorf("%w: column %s: value of Go type %T", errValue, col.Name, v)
		}
		op.fields = append(op.fields, field{name, schemas.AppendJSONValue(nil, v)})
	}
	return op, nil
}

// childOps builds the changes of a child row to its parents' documents: an
// upsert into the document of the parent it has, and a delete from the one it
// had when its parent key changed. A child without a parent (a NULL in its
// parent key) is in no document.
func (h *Handler) childOps(rec *consumer.Record, r *rule, ver uint64) ([]jop, error) {
	j := r.join
	index := h.rule(j.Parent).indexName(j.Parent)
	ckey := strings.TrimPrefix(rec.Key, rec.Table+":")
	mk := func(kind jopKind, parent string, row json.RawMessage) jop {
		return jop{rec: rec, ref: docRef{index, parent}, kind: kind, ver: ver, field: j.Field, ckey: ckey, row: row}
	}
	if rec.Tombstone {
		parent, ok := h.parentFromKey(rec, j)
		if !ok {
			h.log.Warn("lone tombstone of a joined table skipped: its parent key is not part of its primary key",
				"table", rec.Table, "key", rec.Key, "offset", rec.Offset)
			return nil, nil
		}
		if parent == "" {
			return nil, nil
		}
		return []jop{mk(childDelete, parent, nil)}, nil
	}
	c := rec.Change
	if c == nil {
		return nil, fmt.Errorf("%w: record has neither a change nor a tombstone", errValue)
	}
	if ver == 0 {
		return nil, fmt.Errorf("%w: change has no sequence (kanal.seq), so it cannot be versioned", errValue)
	}
	var oldParent string
	if c.Before != nil {
		p, err := parentID(c.Before, j.ParentKey)
		if err != nil {
			return nil, err
		}
		oldParent = p
	}
	switch c.Op {
	case schemas.OpDelete:
		if oldParent == "" {
			return nil, nil
		}
		return []jop{mk(childDelete, oldParent, nil)}, nil
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
	default:
		return nil, fmt.Errorf("%w: unknown operation %q", errValue, c.Op)
	}
	if c.After == nil {
		return nil, fmt.Errorf("%w: %s change without an after image", errValue, c.Op)
	}
	parent, err := parentID(c.After, j.ParentKey)
	if err != nil {
		return nil, err
	}
	var ops []jop
	if oldParent != "" && oldParent != parent {
		ops = append(ops, mk(childDelete, oldParent, nil))
	}
	if parent != "" {
		row, err := r.document(c, c.After)
		if err != nil {
			return nil, err
		}
		ops = append(ops, mk(childUpsert, parent, row))
	}
	return ops, nil
}

// parentID renders the parent's document id from the child's parent key
// columns, like a record key's primary-key part; "" when one of them is NULL.
func parentID(row map[string]any, cols []string) (string, error) {
	var b []byte
	for i, col := range cols {
		v, ok := row[col]
		if !ok {
			return "", fmt.Errorf("%w: join parent_key column %q is not in the row", errValue, col)
		}
		if v == nil {
			return "", nil
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = schemas.AppendKeyValue(b, v)
	}
	return string(b), nil
}

// parentFromKey finds a child's parent id in its record key, when the parent key
// columns are part of the child's primary key (known from an earlier change of
// the table). ok is false when it cannot tell; the id is "" for no parent.
func (h *Handler) parentFromKey(rec *consumer.Record, j *JoinConfig) (string, bool) {
	h.tmu.RLock()
	pk := h.pkCols[rec.Table]
	h.tmu.RUnlock()
	if pk == nil {
		return "", false
	}
	raw := schemas.SplitKeyRaw(strings.TrimPrefix(rec.Key, rec.Table+":"))
	if len(raw) != len(pk) {
		return "", false
	}
	parts := make([]string, 0, len(j.ParentKey))
	for _, col := range j.ParentKey {
		i := slices.Index(pk, col)
		if i < 0 {
			return "", false
		}
		if schemas.IsNullComponent(raw[i]) {
			return "", true
		}
		parts = append(parts, raw[i])
	}
	return strings.Join(parts, ","), true
}

// jmeta is the "__kanal" field of a joined document: the parent row's version
// and whether it exists, and each child row's version (deleted ones too, so
// that an older change cannot bring them back).
type jmeta struct {
	V uint64   `json:"v"`
	P bool     `json:"p"`
	C []jchild `json:"c,omitempty"`
}

type jchild struct {
	F string `json:"f"`
	K string `json:"k"`
	V uint64 `json:"v"`
	D bool   `json:"d,omitempty"`
}

// jdoc is a joined document being changed.
type jdoc struct {
	found              bool
	seqNo, primaryTerm int64
	parent             map[string]json.RawMessage // the parent row's fields
	meta               jmeta
	children           map[string]map[string]json.RawMessage // field → child key → row
	stale              uint64
	changed            bool
}

// childRules returns the join rules of the parent whose documents are in index.
func (h *Handler) childRulesOf(ref docRef) []*rule {
	for parent, rs := range h.children {
		if p := h.rule(parent); p != nil && p.indexName(parent) == ref.index {
			return rs
		}
	}
	return nil
}

// readDoc decodes a document of an _mget answer.
func readDoc(d mgetDoc, rules []*rule) (*jdoc, error) {
	doc := &jdoc{parent: map[string]json.RawMessage{}, children: map[string]map[string]json.RawMessage{}}
	if !d.Found || d.Error != nil {
		return doc, nil
	}
	doc.found = true
	if d.SeqNo == nil || d.PrimaryTerm == nil {
		return nil, fmt.Errorf("_mget %s/%s: no _seq_no/_primary_term", d.Index, d.ID)
	}
	doc.seqNo, doc.primaryTerm = *d.SeqNo, *d.PrimaryTerm
	var src map[string]json.RawMessage
	if err := json.Unmarshal(d.Source, &src); err != nil {
		return nil, fmt.Errorf("_mget %s/%s: %w", d.Index, d.ID, err)
	}
	if m, ok := src[FieldMeta]; ok {
		if err := json.Unmarshal(m, &doc.meta); err != nil {
			return nil, fmt.Errorf("%s/%s: field %s: %w", d.Index, d.ID, FieldMeta, err)
		}
		delete(src, FieldMeta)
	}
	for _, r := range rules {
		f := r.join.Field
		raw, ok := src[f]
		delete(src, f)
		rows := map[string]json.RawMessage{}
		doc.children[f] = rows
		if !ok {
			continue
		}
		live := doc.liveChildren(f)
		if r.kind == JoinObject {
			if len(live) > 0 {
				newest := live[0]
				for _, c := range live {
					if c.V > newest.V {
						newest = c
					}
				}
				rows[newest.K] = raw
			}
			continue
		}
		var arr []json.RawMessage
		if err := json.Unmarshal(raw, &arr); err != nil {
			return nil, fmt.Errorf("%s/%s: field %s is not an array: %w", d.Index, d.ID, f, err)
		}
		// The array holds the live children in key order, as written.
		for i, c := range live {
			if i < len(arr) {
				rows[c.K] = arr[i]
			}
		}
	}
	doc.parent = src
	return doc, nil
}

// liveChildren returns the field's live child entries in key order.
func (d *jdoc) liveChildren(f string) []jchild {
	var out []jchild
	for _, c := range d.meta.C {
		if c.F == f && !c.D {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

func (d *jdoc) child(f, k string) *jchild {
	for i := range d.meta.C {
		if d.meta.C[i].F == f && d.meta.C[i].K == k {
			return &d.meta.C[i]
		}
	}
	return nil
}

// apply applies one change unless the document holds its row at the same or a
// newer version.
func (d *jdoc) apply(op *jop) {
	switch op.kind {
	case parentUpsert, parentDelete:
		if op.ver != 0 && op.ver <= d.meta.V {
			d.stale++
			return
		}
		d.parent = map[string]json.RawMessage{}
		for _, f := range op.fields {
			d.parent[f.name] = f.val
		}
		d.meta.P = op.kind == parentUpsert
		d.meta.V = max(d.meta.V, op.ver)
	case childTruncate:
		for i := range d.meta.C {
			e := &d.meta.C[i]
			if e.F != op.field || e.V >= op.ver {
				continue // another field's, or written after the truncate
			}
			if !e.D {
				delete(d.children[op.field], e.K)
			}
			// A deleted row keeps the truncate's version, so an older change
			// replayed later stays out.
			e.V, e.D = op.ver, true
			d.changed = true
		}
		return
	case childUpsert, childDelete:
		e := d.child(op.field, op.ckey)
		if e != nil && op.ver != 0 && op.ver <= e.V {
			d.stale++
			return
		}
		if e == nil {
			if op.kind == childDelete && op.ver == 0 {
				return
			}
			d.meta.C = append(d.meta.C, jchild{F: op.field, K: op.ckey})
			e = &d.meta.C[len(d.meta.C)-1]
		}
		e.V = max(e.V, op.ver)
		e.D = op.kind == childDelete
		if d.children[op.field] == nil {
			d.children[op.field] = map[string]json.RawMessage{}
		}
		if e.D {
			delete(d.children[op.field], op.ckey)
		} else {
			d.children[op.field][op.ckey] = op.row
		}
	}
	d.changed = true
}

// empty reports whether the document holds neither its parent row nor a child.
func (d *jdoc) empty() bool {
	if d.meta.P {
		return false
	}
	for _, rows := range d.children {
		if len(rows) > 0 {
			return false
		}
	}
	return true
}

// source renders the document: the parent's fields in name order, the join
// fields in rule order, then "__kanal".
func (d *jdoc) source(rules []*rule) []byte {
	b := []byte{'{'}
	names := make([]string, 0, len(d.parent))
	for n := range d.parent {
		names = append(names, n)
	}
	sort.Strings(names)
	sep := func() {
		if len(b) > 1 {
			b = append(b, ',')
		}
	}
	for _, n := range names {
		sep()
		b = schemas.AppendJSONString(b, n)
		b = append(b, ':')
		b = append(b, d.parent[n]...)
	}
	for _, r := range rules {
		f := r.join.Field
		live := d.liveChildren(f)
		if len(live) == 0 {
			continue
		}
		sep()
		b = schemas.AppendJSONString(b, f)
		b = append(b, ':')
		if r.kind == JoinObject {
			newest := live[0]
			for _, c := range live {
				if c.V > newest.V {
					newest = c
				}
			}
			b = append(b, d.children[f][newest.K]...)
			continue
		}
		b = append(b, '[')
		for i, c := range live {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, d.children[f][c.K]...)
		}
		b = append(b, ']')
	}
	sort.Slice(d.meta.C, func(i, j int) bool {
		a, c := d.meta.C[i], d.meta.C[j]
		return a.F < c.F || a.F == c.F && a.K < c.K
	})
	meta, _ := json.Marshal(d.meta)
	sep()
	b = append(b, `"`+FieldMeta+`":`...)
	b = append(b, meta...)
	return append(b, '}')
}

// jaction is the write of one joined document.
type jaction struct {
	ref  docRef
	del  bool
	meta []byte
	doc  []byte
}

// writeAction is the guarded write of a changed document: a create when it did
// not exist, an index or a delete (when it is left empty) guarded by the
// sequence number and primary term it was read at.
func (d *jdoc) writeAction(ref docRef, rules []*rule) (jaction, bool) {
	a := jaction{ref: ref}
	m := make([]byte, 0, 96)
	switch {
	case d.empty() && !d.found:
		return a, false
	case d.empty():
		a.del = true
		m = append(m, `{"delete":{"_index":`...)
	case d.found:
		m = append(m, `{"index":{"_index":`...)
	default:
		m = append(m, `{"create":{"_index":`...)
	}
	m = schemas.AppendJSONString(m, ref.index)
	m = append(m, `,"_id":`...)
	m = schemas.AppendJSONString(m, ref.id)
	if d.found {
		m = append(m, `,"if_seq_no":`...)
		m = strconv.AppendInt(m, d.seqNo, 10)
		m = append(m, `,"if_primary_term":`...)
		m = strconv.AppendInt(m, d.primaryTerm, 10)
	}
	a.meta = append(m, "}}"...)
	if !a.del {
		a.doc = d.source(rules)
	}
	return a, true
}

// mgetChunk bounds the documents of one _mget request.
const mgetChunk = 500

// applyJoined applies the changes of joined documents: read them, apply each
// change that is newer than the row the document holds, write them back guarded
// by their sequence numbers; documents another writer changed in between are
// read and changed again.
func (h *Handler) applyJoined(ctx context.Context, b consumer.Batch, ops []jop) error {
	byRef := map[docRef][]int{}
	var refs []docRef
	for i := range ops {
		if _, ok := byRef[ops[i].ref]; !ok {
			refs = append(refs, ops[i].ref)
		}
		byRef[ops[i].ref] = append(byRef[ops[i].ref], i)
	}
	maxAttempts := max(h.cfg.Retry.MaxAttempts, 20)
	backoff := h.cfg.Retry.Backoff()
	var perm error
	for attempt := 1; ; attempt++ {
		docs := map[docRef]*jdoc{}
		for i := 0; i < len(refs); i += mgetChunk {
			part := refs[i:min(i+mgetChunk, len(refs))]
			got, err := h.c.mget(ctx, part)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("elasticsearch sink: %s: reading %d joined documents: %w", describe(b, ops[byRef[part[0]][0]].rec), len(part), err)
			}
			for k, d := range got {
				doc, err := readDoc(d, h.childRulesOf(part[k]))
				if err != nil {
					return fmt.Errorf("elasticsearch sink: %s: %w", describe(b, ops[byRef[part[k]][0]].rec), err)
				}
				docs[part[k]] = doc
			}
		}
		var acts []jaction
		for _, ref := range refs {
			d := docs[ref]
			for _, i := range byRef[ref] {
				d.apply(&ops[i])
			}
			if !d.changed {
				h.stale.Add(d.stale)
				continue
			}
			if a, ok := d.writeAction(ref, h.childRulesOf(ref)); ok {
				acts = append(acts, a)
			} else {
				h.stale.Add(d.stale)
			}
		}
		var redo []docRef
		loaded := false
		var lastErr error
		for start := 0; start < len(acts); start += h.cfg.BulkMaxActions {
			chunk := acts[start:min(start+h.cfg.BulkMaxActions, len(acts))]
			var body []byte
			for _, a := range chunk {
				body = append(append(body, a.meta...), '\n')
				if a.doc != nil {
					body = append(append(body, a.doc...), '\n')
				}
			}
			res, err := h.c.bulk(ctx, body, len(chunk))
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if !retryable(err) {
					return fmt.Errorf("elasticsearch sink: %s: _bulk: %w", describe(b, ops[byRef[chunk[0].ref][0]].rec), err)
				}
				for _, a := range chunk {
					redo = append(redo, a.ref)
				}
				loaded, lastErr = true, err
				continue
			}
			for k, a := range chunk {
				r := &res[k]
				switch {
				case r.Status/100 == 2:
					h.stale.Add(docs[a.ref].stale)
					if a.del {
						h.deleted.Add(1)
					} else {
						h.indexed.Add(1)
					}
				case r.Status == http.StatusConflict, a.del && r.Status == http.StatusNotFound:
					h.conflicts.Add(1)
					redo = append(redo, a.ref)
				case r.Status == http.StatusTooManyRequests || r.Status >= 500:
					redo = append(redo, a.ref)
					loaded, lastErr = true, fmt.Errorf("index %s, id %q: status %d: %s", a.ref.index, a.ref.id, r.Status, r.Error)
				default:
					if perm == nil {
						perm = consumer.Permanent(fmt.Errorf("elasticsearch sink: %s: %w: index %s, id %q: status %d: %s",
							describe(b, ops[byRef[a.ref][0]].rec), ErrRejected, a.ref.index, a.ref.id, r.Status, r.Error))
					}
				}
			}
		}
		if len(redo) == 0 {
			return perm
		}
		if attempt >= maxAttempts {
			return fmt.Errorf("elasticsearch sink: %s: %d joined documents not written after %d attempts (last: %v)",
				describe(b, ops[byRef[redo[0]][0]].rec), len(redo), attempt, lastErr)
		}
		if loaded {
			h.retried.Add(1)
			if err := backoff.Sleep(ctx); err != nil {
				return err
			}
		}
		refs = redo
	}
}
