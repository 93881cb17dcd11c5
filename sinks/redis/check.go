package redissink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// The Handler implements consumer.Checker for `kanal verify`: a row is what the
// handler would write for it now (build, as for a snapshot read), compared field
// by field with what Redis holds, leaving out the version. Set memberships are
// compared as the row records them ("__sets"), not the sets' members.

var _ consumer.Checker = (*Handler)(nil)

// CheckRows implements consumer.Checker.
func (h *Handler) CheckRows(ctx context.Context, table string, rows []*schemas.Change) ([]consumer.Mismatch, error) {
	t := h.r.table(table)
	if t == nil {
		return nil, nil // not stored
	}
	names := &storedNames{}
	var strs strBuf
	var args anyBuf
	byInst := map[string][]op{}
	for _, c := range rows {
		rec := &consumer.Record{Key: c.Key(), Table: table, Op: schemas.OpRead, Seq: 1, Change: c}
		o, err := h.build(t, rec, 0, names, &strs, &args)
		if err != nil {
			return nil, fmt.Errorf("redis sink %s: check %s: %w", h.r.cfg.Name, rec.Key, err)
		}
		byInst[o.inst] = append(byInst[o.inst], o)
	}
	var out []consumer.Mismatch
	for inst, ops := range byInst {
		cl := h.r.clients[inst]
		pipe := cl.Pipeline()
		cmds := make([]redis.Cmder, len(ops))
		for i := range ops {
			if t.layout == layoutJSON {
				cmds[i] = pipe.Get(ctx, ops[i].key)
			} else {
				cmds[i] = pipe.HGetAll(ctx, ops[i].key)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("redis sink %s: read %d rows of %s on %s: %w", h.r.cfg.Name, len(ops), table, inst, err)
		}
		for i := range ops {
			o := &ops[i]
			var kind, detail string
			var err error
			if t.layout == layoutJSON {
				kind, detail, err = compareJSON(o.values[0].([]byte), cmds[i].(*redis.StringCmd))
			} else {
				kind, detail, err = compareHash(o.values, cmds[i].(*redis.MapStringStringCmd))
			}
			if err != nil {
				return nil, fmt.Errorf("redis sink %s: read %s on %s: %w", h.r.cfg.Name, o.key, inst, err)
			}
			if kind != "" {
				out = append(out, consumer.Mismatch{Table: table, Key: o.recKey, Kind: kind, Detail: detail})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// compareHash compares the hash the handler would write (field, value, …) with
// HGETALL's answer.
func compareHash(values []any, cmd *redis.MapStringStringCmd) (kind, detail string, err error) {
	got, err := cmd.Result()
	if err != nil {
		if strings.HasPrefix(err.Error(), "WRONGTYPE") {
			return consumer.MismatchDiffers, "the key holds no hash", nil
		}
		return "", "", err
	}
	if len(got) == 0 {
		return consumer.MismatchMissing, "", nil
	}
	want := make(map[string]string, len(values)/2)
	for i := 0; i+1 < len(values); i += 2 {
		name := values[i].(string)
		switch v := values[i+1].(type) {
		case string:
			want[name] = v
		case []byte:
			want[name] = string(v)
		default:
			want[name] = fmt.Sprint(v)
		}
	}
	delete(want, FieldVersion)
	delete(got, FieldVersion)
	return diffFields(want, got)
}

// compareJSON compares the JSON document the handler would write with GET's answer.
func compareJSON(doc []byte, cmd *redis.StringCmd) (kind, detail string, err error) {
	got, err := cmd.Bytes()
	if errors.Is(err, redis.Nil) {
		return consumer.MismatchMissing, "", nil
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "WRONGTYPE") {
			return consumer.MismatchDiffers, "the key holds no string", nil
		}
		return "", "", err
	}
	var w, g map[string]json.RawMessage
	if err := json.Unmarshal(doc, &w); err != nil {
		return "", "", err
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return consumer.MismatchDiffers, "the key holds no JSON object", nil
	}
	delete(w, FieldVersion)
	delete(g, FieldVersion)
	want := make(map[string]string, len(w))
	for k, v := range w {
		want[k] = string(v)
	}
	have := make(map[string]string, len(g))
	for k, v := range g {
		have[k] = string(bytes.TrimSpace(v))
	}
	return diffFields(want, have)
}

// diffFields names the first fields (in name order) that differ.
func diffFields(want, got map[string]string) (kind, detail string, err error) {
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: missing (source %q)", k, truncate(w)))
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: %q (source %q)", k, truncate(g), truncate(w)))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %q (not in the source row)", k, truncate(g)))
		}
	}
	if len(diffs) == 0 {
		return "", "", nil
	}
	sort.Strings(diffs)
	if len(diffs) > 3 {
		diffs = append(diffs[:3], fmt.Sprintf("… %d more", len(diffs)-3))
	}
	return consumer.MismatchDiffers, strings.Join(diffs, "; "), nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// CheckAbsent implements consumer.Checker.
func (h *Handler) CheckAbsent(ctx context.Context, table string, keys []string) ([]consumer.Mismatch, error) {
	t := h.r.table(table)
	if t == nil {
		return nil, nil
	}
	byInst := map[string][]string{}
	for _, k := range keys {
		rk := t.prefix + k
		byInst[t.instance(rk)] = append(byInst[t.instance(rk)], k)
	}
	var out []consumer.Mismatch
	for inst, ks := range byInst {
		pipe := h.r.clients[inst].Pipeline()
		cmds := make([]*redis.IntCmd, len(ks))
		for i, k := range ks {
			cmds[i] = pipe.Exists(ctx, t.prefix+k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("redis sink %s: check %d keys of %s on %s: %w", h.r.cfg.Name, len(ks), table, inst, err)
		}
		for i, k := range ks {
			if cmds[i].Val() > 0 {
				out = append(out, consumer.Mismatch{Table: table, Key: k, Kind: consumer.MismatchExtra, Detail: "the source has no row with this key"})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// TargetKeys implements consumer.Checker: it scans every instance of the table
// for its row keys.
func (h *Handler) TargetKeys(ctx context.Context, table string, fn func(key string) error) error {
	t := h.r.table(table)
	if t == nil {
		return nil
	}
	match := globEscape(t.prefix+table+":") + "*"
	for _, inst := range t.names {
		it := h.r.clients[inst].Scan(ctx, 0, match, 1000).Iterator()
		for it.Next(ctx) {
			if err := fn(strings.TrimPrefix(it.Val(), t.prefix)); err != nil {
				return err
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("redis sink %s: scan %s on %s: %w", h.r.cfg.Name, match, inst, err)
		}
	}
	return nil
}
