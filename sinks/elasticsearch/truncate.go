package essink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// ErrTruncate is wrapped by the permanent error of a truncate the sink cannot
// apply: the table shares its index with other tables, so its documents cannot
// be told from theirs. The error names the table, the index and the rule that
// may write other tables' documents there.
var ErrTruncate = errors.New("truncate cannot be applied")

// firstTruncate returns the index of the batch's first truncate record, or -1.
func firstTruncate(recs []consumer.Record) int {
	for i := range recs {
		if r := &recs[i]; !r.Tombstone && r.Op == schemas.OpTruncate {
			return i
		}
	}
	return -1
}

// handleTruncates applies b in runs split at its truncates, each truncate
// after the records before it: a truncate reaches every partition of the
// table's topic (docs/formats.md), and each partition's handler applies it
// where it stands in that partition. As in Handle, a permanent error of one run
// does not keep the others from being applied; it is returned at the end.
func (h *Handler) handleTruncates(ctx context.Context, b consumer.Batch, first int) error {
	var perm error
	keep := func(err error) error {
		if err != nil && !consumer.IsPermanent(err) {
			return err
		}
		perm = cmpErr(perm, err)
		return nil
	}
	part := func(recs []consumer.Record) consumer.Batch {
		return consumer.Batch{Group: b.Group, Topic: b.Topic, Partition: b.Partition, Records: recs}
	}
	if first > 0 {
		if err := keep(h.Handle(ctx, part(b.Records[:first]))); err != nil {
			return err
		}
	}
	rec := &b.Records[first]
	if r := h.rule(rec.Table); r == nil {
		h.skipped.Add(1)
	} else if err := keep(h.truncate(ctx, b, rec, r)); err != nil {
		return err
	}
	h.mu.Lock()
	delete(h.lastDel, partKey{b.Topic, b.Partition}) // a truncate is not a delete a tombstone follows
	h.mu.Unlock()
	if rest := b.Records[first+1:]; len(rest) > 0 {
		if err := keep(h.Handle(ctx, part(rest))); err != nil {
			return err
		}
	}
	return perm
}

// truncate removes every document of the table older than the truncate: it
// refreshes and scrolls through the table's index (every date index of a date-partitioned
// table; the parent's index for a joined table) and deletes each document with
// the truncate's sequence as external version, so the cluster itself keeps
// documents written after the truncate (by a partition that is ahead: a higher
// version, answered 409 and counted stale) and keeps the deleted version, which
// refuses a replay of an older change for index.gc_deletes. Joined documents
// lose the parent row (a parent table's truncate) or the child rows (a child
// table's) older than the truncate, each row's version checked as for a change.
// Applying it again deletes nothing more.
//
// Documents do not say which table they come from, so when other tables may
// write into the same index the truncate is refused (ErrTruncate, permanent).
func (h *Handler) truncate(ctx context.Context, b consumer.Batch, rec *consumer.Record, r *rule) error {
	fail := func(err error) error {
		return consumer.Permanent(fmt.Errorf("elasticsearch sink: %s: TRUNCATE of %s (seq %d): %w", describe(b, rec), rec.Table, rec.Seq, err))
	}
	switch {
	case rec.Seq == 0:
		return fail(fmt.Errorf("%w: no sequence (kanal.seq): the rows it removed cannot be told from later ones", errValue))
	case rec.Seq > math.MaxInt64:
		return fail(fmt.Errorf("%w: sequence exceeds the largest external version", errValue))
	}
	owner, ir := rec.Table, r
	if r.join != nil {
		owner = r.join.Parent
		ir = h.rule(owner)
	}
	index := ir.indexName(owner)
	if other := h.sharedIndex(owner, index, ir.dateCol != ""); other != "" {
		return fail(fmt.Errorf("%w: index %s may also hold documents of %s, and documents do not say which table they belong to; "+
			"delete this table's documents yourself (docs/elasticsearch.md, TRUNCATE)", ErrTruncate, index, other))
	}
	pattern := index
	if ir.dateCol != "" {
		pattern = index + "-*"
	}
	// Search is near real-time: without a refresh the scroll would miss the
	// documents written in the last second, such as the batch's records before
	// the truncate.
	err := h.c.refresh(ctx, pattern)
	var page scrollPage
	if err == nil {
		// A page is one _bulk request of deletes; a scroll's page may not exceed
		// index.max_result_window (10,000 by default).
		page, err = h.c.scrollStart(ctx, pattern, min(h.cfg.BulkMaxActions, 10000))
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("elasticsearch sink: %s: TRUNCATE of %s: listing the documents of %s: %w", describe(b, rec), rec.Table, pattern, err)
	}
	scrollID := page.ScrollID
	defer func() {
		if scrollID == "" {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.Timeout)
		defer cancel()
		if err := h.c.scrollClear(cctx, scrollID); err != nil {
			h.log.DebugContext(ctx, "could not free the truncate's scroll (it expires on its own)", "err", err)
		}
	}()
	var perm error
	docs := 0
	for len(page.Hits.Hits) > 0 {
		var acts []action
		var ops []jop
		err = nil
		for _, hit := range page.Hits.Hits {
			if ir.dateCol != "" && !ir.dateIndex(index, hit.Index) {
				continue // another index the pattern matches
			}
			docs++
			switch {
			case r.join != nil:
				ops = append(ops, jop{rec: rec, ref: docRef{hit.Index, hit.ID}, kind: childTruncate, ver: rec.Seq, field: r.join.Field})
			case len(h.children[rec.Table]) > 0:
				ops = append(ops, jop{rec: rec, ref: docRef{hit.Index, hit.ID}, kind: parentDelete, ver: rec.Seq})
			default:
				acts = append(acts, newAction(rec, hit.Index, hit.ID, true, rec.Seq, nil))
			}
		}
		if len(acts) > 0 {
			err = h.sendPlain(ctx, b, acts)
		}
		if len(ops) > 0 {
			err = h.applyJoined(ctx, b, ops)
		}
		if err != nil {
			if !consumer.IsPermanent(err) {
				return err
			}
			perm = cmpErr(perm, err)
		}
		if page, err = h.c.scrollNext(ctx, scrollID); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("elasticsearch sink: %s: TRUNCATE of %s: listing the documents of %s: %w", describe(b, rec), rec.Table, pattern, err)
		}
		if page.ScrollID != "" {
			scrollID = page.ScrollID
		}
	}
	if perm != nil {
		return perm
	}
	h.truncates.Add(1)
	h.log.InfoContext(ctx, "truncate applied", "table", rec.Table, "topic", b.Topic, "partition", b.Partition,
		"offset", rec.Offset, "seq", rec.Seq, "index", pattern, "documents_checked", docs)
	return nil
}

// dateIndex reports whether name is one of the date indexes of base: base, '-'
// and a date in the rule's format.
func (r *rule) dateIndex(base, name string) bool {
	suffix, ok := strings.CutPrefix(name, base+"-")
	if !ok {
		return false
	}
	t, err := time.Parse(r.dateFmt, suffix)
	return err == nil && strings.ToLower(t.Format(r.dateFmt)) == suffix
}

// sharedIndex names a table other than table whose documents a rule may write
// to index (the table's index name, for a date-partitioned table the name
// before its date suffix), or returns "" when no other table can. Index names
// are lower-cased and their templates can map several tables to one name ("orders"
// for shop.orders_*, "{table}" for *.orders, "{db}{table}" for a.bc and ab.c);
// every rule that has an index of its own is checked, whether or not an earlier
// rule shadows it. Tables whose names differ only in letter case are taken for
// one.
func (h *Handler) sharedIndex(table, index string, dated bool) string {
	for i := range h.cfg.Tables {
		tc := &h.cfg.Tables[i]
		if tc.Join != nil || (tc.DateColumn != "") != dated {
			continue
		}
		tpl := tc.Index
		if tpl == "" {
			tpl = "{db}.{table}"
		}
		if other := otherTable(tc.Match, strings.ToLower(tpl), strings.ToLower(table), index); other != "" {
			return fmt.Sprintf("%s (tables[%d]: match %q, index %q)", other, i, tc.Match, tpl)
		}
	}
	return ""
}

// otherTable returns a table other than table that a rule with this match
// pattern and index template may give the index name, or "". It tries every
// way the template's placeholders can cover name: a placeholder the template
// lacks is free when its part of the pattern has wildcards (then another table
// may exist) and fixed otherwise.
func otherTable(match, tpl, table, name string) string {
	dbPat, tblPat, _ := strings.Cut(strings.ToLower(match), ".")
	toks := splitTemplate(tpl)
	var vals [2]string // db, table
	var bound [2]bool
	var found string
	var walk func(k, pos int) bool
	walk = func(k, pos int) bool {
		if k == len(toks) {
			if pos != len(name) {
				return false
			}
			found = candidate([2]string{dbPat, tblPat}, vals, bound, table)
			return found != ""
		}
		tk := toks[k]
		if tk.ph < 0 {
			return strings.HasPrefix(name[pos:], tk.lit) && walk(k+1, pos+len(tk.lit))
		}
		if bound[tk.ph] {
			v := vals[tk.ph]
			return strings.HasPrefix(name[pos:], v) && walk(k+1, pos+len(v))
		}
		for end := pos + 1; end <= len(name); end++ {
			vals[tk.ph], bound[tk.ph] = name[pos:end], true
			if walk(k+1, end) {
				return true
			}
		}
		vals[tk.ph], bound[tk.ph] = "", false
		return false
	}
	walk(0, 0)
	return found
}

// candidate returns the table a parse of an index name stands for when it is
// not table and the pattern's parts (db, table) admit it, or "".
func candidate(pats, vals [2]string, bound [2]bool, table string) string {
	var parts [2]string
	for i := range 2 {
		switch {
		case bound[i]:
			if ok, _ := path.Match(pats[i], vals[i]); !ok {
				return ""
			}
			parts[i] = vals[i]
		case strings.ContainsAny(pats[i], `*?[\`):
			return "any table matching " + pats[0] + "." + pats[1]
		default:
			parts[i] = pats[i]
		}
	}
	if t := parts[0] + "." + parts[1]; t != table {
		return t
	}
	return ""
}

// tmplTok is a piece of an index template: literal text, or placeholder ph
// (0 {db}, 1 {table}).
type tmplTok struct {
	lit string
	ph  int
}

func splitTemplate(tpl string) []tmplTok {
	var out []tmplTok
	for tpl != "" {
		i, ph, n := len(tpl), -1, 0
		if j := strings.Index(tpl, "{db}"); j >= 0 && j < i {
			i, ph, n = j, 0, len("{db}")
		}
		if j := strings.Index(tpl, "{table}"); j >= 0 && j < i {
			i, ph, n = j, 1, len("{table}")
		}
		if i > 0 {
			out = append(out, tmplTok{lit: tpl[:i], ph: -1})
		}
		if ph >= 0 {
			out = append(out, tmplTok{ph: ph})
		}
		tpl = tpl[i+n:]
	}
	return out
}
