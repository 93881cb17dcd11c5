package schemas

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"
)

// compactDesc is a json-compact descriptor as a decoder uses it.
type compactDesc struct {
	key         string // FingerprintKey of its fingerprint
	name        string
	db, table   string
	cols        []Column
	kinds       []Kind
	keyFallback bool
}

// wireCompactDesc is a descriptor as published.
type wireCompactDesc struct {
	Format      string   `json:"format"`
	Name        string   `json:"name"`
	DB          string   `json:"db"`
	Table       string   `json:"table"`
	Columns     []Column `json:"columns"`
	Nullable    []bool   `json:"nullable"`
	KeyFallback bool     `json:"key_fallback"`
}

// maxCachedCompactDescs bounds a Decoder's json-compact descriptors.
const maxCachedCompactDescs = 1024

type compactFormatDecoder struct{ d *Decoder }

func (c compactFormatDecoder) Decode(ctx context.Context, value []byte) ([]*Change, error) {
	return c.d.decodeCompact(ctx, value)
}

// compactDescriptor returns the descriptor published under fp, resolving it
// when it is not cached.
func (d *Decoder) compactDescriptor(ctx context.Context, fp uint64) (*compactDesc, error) {
	if c := d.lastCompact; c != nil && d.lastCompactFP == fp {
		return c, nil
	}
	if c, ok := d.compact[fp]; ok {
		d.lastCompact, d.lastCompactFP = c, fp
		return c, nil
	}
	key := FingerprintKey(fp)
	if d.Schemas == nil {
		return nil, fmt.Errorf("%w: %s: descriptor fingerprint %s: no schema resolver to look it up in %s (consumers get one from kanal's Kafka settings)",
			ErrDecode, FormatJSONCompact, key, SchemasTopic("<prefix>"))
	}
	js, err := d.Schemas.SchemaByFingerprint(ctx, fp)
	switch {
	case errors.Is(err, ErrSchemaNotFound):
		return nil, fmt.Errorf("%w: %w: %s: descriptor fingerprint %s: %v", ErrDecode, ErrSchemaNotFound, FormatJSONCompact, key, err)
	case err != nil:
		if !errors.Is(err, ErrSchemaUnavailable) {
			err = fmt.Errorf("%w: %s: descriptor fingerprint %s: %w", ErrSchemaUnavailable, FormatJSONCompact, key, err)
		}
		return nil, err
	}
	c, err := parseCompactDescriptor(js, fp)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: descriptor fingerprint %s: %v", ErrDecode, FormatJSONCompact, key, err)
	}
	if d.compact == nil || len(d.compact) >= maxCachedCompactDescs {
		d.compact = map[uint64]*compactDesc{}
	}
	d.compact[fp] = c
	d.lastCompact, d.lastCompactFP = c, fp
	return c, nil
}

func parseCompactDescriptor(js string, fp uint64) (*compactDesc, error) {
	if compactFingerprint([]byte(js)) != fp {
		// An avro schema or anything else under this key: not the descriptor
		// the record was written with.
		return nil, errors.New("the schemas topic holds something else under this fingerprint")
	}
	var w wireCompactDesc
	if err := json.Unmarshal([]byte(js), &w); err != nil {
		return nil, fmt.Errorf("descriptor: %v", err)
	}
	if w.Format != FormatJSONCompact {
		return nil, fmt.Errorf("descriptor of format %q", w.Format)
	}
	c := &compactDesc{key: FingerprintKey(fp), name: w.Name, db: w.DB, table: w.Table, cols: w.Columns, keyFallback: w.KeyFallback}
	if c.cols == nil {
		c.cols = []Column{}
	}
	for _, col := range c.cols {
		c.kinds = append(c.kinds, col.Kind())
	}
	return c, nil
}

// decodeCompact decodes a json-compact value: the one-pass path for what kanal
// writes, encoding/json for anything else (which also gives the errors).
func (d *Decoder) decodeCompact(ctx context.Context, value []byte) ([]*Change, error) {
	p := &jsonScan{d: d, alias: d.Alias}
	if len(value) > 0 {
		p.s = unsafe.String(&value[0], len(value))
	}
	var desc *compactDesc
	var lookup *compactLookup
	if p.lit("[") {
		if key, ok := p.str(); ok {
			if c := d.lastCompact; c != nil && key == c.key {
				desc = c
			} else if fp, ok := compactKeyFingerprint(key); ok {
				var err error
				if desc, err = d.compactDescriptor(ctx, fp); err != nil {
					// encoding/json decides: a value that is not even a
					// json-compact array is refused as such, and the lookup
					// is not repeated.
					lookup = &compactLookup{fp: fp, err: err}
				}
			}
		}
	}
	if desc != nil {
		o := &oneChange{}
		if p.compactRest(desc, &o.c) {
			o.list[0] = &o.c
			return o.list[:], nil
		}
	}
	c, err := d.decodeCompactStd(ctx, value, lookup)
	if err != nil {
		return nil, err
	}
	return []*Change{c}, nil
}

// compactRest reads what follows the fingerprint into the zero Change c, and
// reports false when the input is not what the fast path takes.
func (p *jsonScan) compactRest(desc *compactDesc, c *Change) bool {
	if !p.lit(",") {
		return false
	}
	op, ok := p.str()
	if !ok {
		return false
	}
	c.Op = knownOp(op)
	var n string
	var err error
	if !p.lit(",") {
		return false
	}
	if n, ok = p.num(); !ok {
		return false
	}
	if c.Seq, err = parseUint(n, 64); err != nil || !p.lit(",") {
		return false
	}
	s := &c.Source
	if n, ok = p.num(); !ok {
		return false
	}
	sid, err := parseUint(n, 32)
	if err != nil || !p.lit(",") {
		return false
	}
	s.ServerID = uint32(sid)
	file, ok := p.str()
	if !ok || !p.lit(",") {
		return false
	}
	s.File = p.name(file)
	if n, ok = p.num(); !ok {
		return false
	}
	pos, err := parseUint(n, 32)
	if err != nil || !p.lit(",") {
		return false
	}
	s.Pos = uint32(pos)
	gtid, ok := p.str()
	if !ok || !p.lit(",") {
		return false
	}
	s.GTID = p.text(gtid)
	if n, ok = p.num(); !ok {
		return false
	}
	if s.TsMs, err = parseInt(n); err != nil || !p.lit(",") {
		return false
	}
	if n, ok = p.num(); !ok {
		return false
	}
	row, err := parseInt(n)
	if err != nil || int64(int(row)) != row || !p.lit(",") {
		return false
	}
	s.Row = int(row)
	// An update's before image is checked but not built when no one reads it.
	if c.Before, ok = p.compactRow(desc, !p.d.SkipUpdateBefore || c.Op != OpUpdate); !ok || !p.lit(",") {
		return false
	}
	if c.After, ok = p.compactRow(desc, true); !ok {
		return false
	}
	s.Name = desc.name
	if p.lit(",") {
		name, ok := p.str()
		if !ok {
			return false
		}
		s.Name = p.name(name)
	}
	if !p.lit("]") {
		return false
	}
	if p.ws(); p.i != len(p.s) {
		return false
	}
	s.DB, s.Table = desc.db, desc.table
	c.Columns, c.KeyFallback = desc.cols, desc.keyFallback
	// An update whose skipped before image is its only one fails here and
	// goes to encoding/json, which keeps it (as the JSON fast path does).
	return checkImages(c) == nil
}

// compactRow reads a row image: null, or an array of the descriptor's columns.
// Unless keep is set it only checks the image and returns a nil map.
func (p *jsonScan) compactRow(desc *compactDesc, keep bool) (map[string]any, bool) {
	if p.lit("null") {
		return nil, true
	}
	if !p.lit("[") {
		return nil, false
	}
	var row map[string]any
	if keep {
		row = make(map[string]any, len(desc.cols))
	}
	if len(desc.cols) == 0 {
		return row, p.lit("]")
	}
	for i, col := range desc.cols {
		v, ok := p.value(desc.kinds[i], keep)
		if !ok {
			return nil, false
		}
		if keep {
			row[col.Name] = v
		}
		more, ok := p.next(']')
		if !ok || more != (i < len(desc.cols)-1) {
			return nil, false
		}
	}
	return row, true
}

// compactLookup is a descriptor lookup that failed.
type compactLookup struct {
	fp  uint64
	err error
}

// decodeCompactStd decodes a json-compact value with encoding/json: the
// reference the fast path must agree with. failed, when not nil, is the fast
// path's failed lookup, returned instead of looking the same fingerprint up again.
func (d *Decoder) decodeCompactStd(ctx context.Context, value []byte, failed *compactLookup) (*Change, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrDecode, FormatJSONCompact, fmt.Sprintf(format, args...))
	}
	var fields []json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil {
		return nil, bad("%v", err)
	}
	if len(fields) != 11 && len(fields) != 12 {
		return nil, bad("an array of %d elements, not 11 or 12", len(fields))
	}
	var key string
	if err := json.Unmarshal(fields[0], &key); err != nil {
		return nil, bad("fingerprint: %v", err)
	}
	fp, ok := compactKeyFingerprint(key)
	if !ok {
		return nil, bad("fingerprint %q is not 16 hex digits", key)
	}
	if failed != nil && failed.fp == fp {
		return nil, failed.err
	}
	desc, err := d.compactDescriptor(ctx, fp)
	if err != nil {
		return nil, err
	}
	c := &Change{Columns: desc.cols, KeyFallback: desc.keyFallback}
	s := &c.Source
	s.Name, s.DB, s.Table = desc.name, desc.db, desc.table
	where := fmt.Sprintf("%s.%s (descriptor %s)", desc.db, desc.table, desc.key)
	for i, f := range []struct {
		name string
		into any
	}{{"op", &c.Op}, {"seq", &c.Seq}, {"server_id", &s.ServerID}, {"file", &s.File}, {"pos", &s.Pos},
		{"gtid", &s.GTID}, {"ts_ms", &s.TsMs}, {"row", &s.Row}} {
		if err := json.Unmarshal(fields[i+1], f.into); err != nil {
			return nil, bad("%s: %s: %v", where, f.name, err)
		}
	}
	if len(fields) == 12 {
		if err := json.Unmarshal(fields[11], &s.Name); err != nil {
			return nil, bad("%s: name: %v", where, err)
		}
	}
	if c.Before, err = decodeCompactRow(desc.cols, fields[9]); err != nil {
		return nil, bad("%s before: %v", where, err)
	}
	if c.After, err = decodeCompactRow(desc.cols, fields[10]); err != nil {
		return nil, bad("%s after: %v", where, err)
	}
	if err := checkImages(c); err != nil {
		return nil, bad("%s: %v", where, err)
	}
	return c, nil
}

func decodeCompactRow(cols []Column, raw json.RawMessage) (map[string]any, error) {
	var vals []json.RawMessage
	if err := json.Unmarshal(raw, &vals); err != nil {
		return nil, err
	}
	if vals == nil {
		return nil, nil
	}
	if len(vals) != len(cols) {
		return nil, fmt.Errorf("%d values for %d columns", len(vals), len(cols))
	}
	row := make(map[string]any, len(cols))
	for i, c := range cols {
		v, err := decodeJSONValue(c, vals[i])
		if err != nil {
			return nil, fmt.Errorf("column %q: %v", c.Name, err)
		}
		row[c.Name] = v
	}
	return row, nil
}
