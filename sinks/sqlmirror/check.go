package sqlmirror

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// The Handler implements consumer.Checker for `kanal verify` (Postgres and
// MySQL targets): each row's copied columns are compared, by the target itself,
// with the values the mirror would bind for the row (IS NOT DISTINCT FROM, <=>),
// so that the comparison follows the target's own types.

var _ consumer.Checker = (*Handler)(nil)

var errCheckPhoenix = errors.New("sqlmirror: kanal verify does not read Phoenix targets")

// CheckRows implements consumer.Checker. Rows are compared checkBatch at a
// time: one statement of per-row SELECTs joined by UNION ALL.
func (h *Handler) CheckRows(ctx context.Context, table string, rows []*schemas.Change) ([]consumer.Mismatch, error) {
	if h.cfg.Dialect == Phoenix {
		return nil, errCheckPhoenix
	}
	if err := h.init(ctx); err != nil {
		return nil, err
	}
	var out []consumer.Mismatch
	for start := 0; start < len(rows); start += checkBatch {
		ms, err := h.checkBatch(ctx, table, rows[start:min(len(rows), start+checkBatch)])
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// checkBatch bounds the rows of one comparison statement.
const checkBatch = 100

func (h *Handler) checkBatch(ctx context.Context, table string, rows []*schemas.Change) ([]consumer.Mismatch, error) {
	var parts []string
	var args []any
	plans := make([]*plan, len(rows))
	for i, c := range rows {
		if c.KeyFallback {
			return nil, fmt.Errorf("sqlmirror: table %s has no primary key: a mirror needs one", table)
		}
		p, err := h.planFor(table, c.Columns)
		if err != nil {
			return nil, err
		}
		plans[i] = p
		if i > 0 && p != plans[0] {
			// Another column layout within a chunk (a schema change): its
			// own statement.
			head, err := h.checkBatch(ctx, table, rows[:i])
			if err != nil {
				return nil, err
			}
			tail, err := h.checkBatch(ctx, table, rows[i:])
			return append(head, tail...), err
		}
		first := len(args)
		for _, col := range p.key {
			v, err := h.value(table, col, c.After[col.Name])
			if err != nil {
				return nil, err
			}
			args = append(args, v)
		}
		eq := make([]string, len(p.cols))
		for j, col := range p.cols {
			v, err := h.value(table, col, c.After[col.Name])
			if err != nil {
				return nil, err
			}
			args = append(args, v)
			name, param := h.d.quote(p.names[j]), h.d.param(len(args)-1)
			if h.cfg.Dialect == MySQL {
				eq[j] = "(" + name + " <=> " + param + ")"
			} else {
				eq[j] = "(" + name + " IS NOT DISTINCT FROM " + param + ")"
			}
		}
		where := make([]string, len(p.keyNames))
		for j, k := range p.keyNames {
			where[j] = h.d.quote(k) + " = " + h.d.param(first+j)
		}
		parts = append(parts, "SELECT "+strconv.Itoa(i)+", "+strings.Join(eq, ", ")+" FROM "+h.d.quote(p.target)+" WHERE "+strings.Join(where, " AND "))
	}
	if len(rows) == 0 {
		return nil, nil
	}
	p := plans[0]
	res, err := h.db.QueryContext(ctx, strings.Join(parts, " UNION ALL "), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlmirror %s: check %d rows of %s: %w", h.cfg.Name, len(rows), table, err)
	}
	defer res.Close()
	found := make([]bool, len(rows))
	var out []consumer.Mismatch
	same := make([]sql.NullBool, len(p.cols))
	dest := make([]any, len(same)+1)
	var idx int
	dest[0] = &idx
	for i := range same {
		dest[i+1] = &same[i]
	}
	for res.Next() {
		if err := res.Scan(dest...); err != nil {
			return nil, err
		}
		if idx < 0 || idx >= len(rows) {
			continue
		}
		found[idx] = true
		var differ []string
		for i, s := range same {
			if !s.Valid || !s.Bool {
				differ = append(differ, p.names[i])
			}
		}
		if len(differ) > 0 {
			out = append(out, consumer.Mismatch{Table: table, Key: rows[idx].Key(), Kind: consumer.MismatchDiffers,
				Detail: "columns " + strings.Join(differ, ", ") + " of " + p.target + " differ from the source"})
		}
	}
	if err := res.Err(); err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok {
			out = append(out, consumer.Mismatch{Table: table, Key: rows[i].Key(), Kind: consumer.MismatchMissing, Detail: "no row in " + p.target})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// keyPlan returns the table's key columns: from the rows seen, or the target's
// catalog.
func (h *Handler) keyPlan(ctx context.Context, table string) (*plan, error) {
	if h.cfg.Dialect == Phoenix {
		return nil, errCheckPhoenix
	}
	if err := h.init(ctx); err != nil {
		return nil, err
	}
	h.mu.Lock()
	p := h.keys[table]
	h.mu.Unlock()
	if p != nil {
		return p, nil
	}
	tx, err := h.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return h.catalogKey(ctx, tx, table)
}

// CheckAbsent implements consumer.Checker.
func (h *Handler) CheckAbsent(ctx context.Context, table string, keys []string) ([]consumer.Mismatch, error) {
	p, err := h.keyPlan(ctx, table)
	if err != nil || p == nil {
		return nil, err
	}
	q := "SELECT 1 FROM " + h.d.quote(p.target) + " WHERE " + keyWhere(h.d, p.keyNames)
	var out []consumer.Mismatch
	for _, k := range keys {
		_, pk, _ := strings.Cut(k, ":")
		parts := schemas.SplitKeyRaw(pk)
		if len(parts) != len(p.key) {
			continue // not a key of this table's shape: it cannot be stored
		}
		args := make([]any, len(parts))
		for i, raw := range parts {
			kv, err := keyValue(p.key[i], raw)
			if err != nil {
				return nil, fmt.Errorf("sqlmirror %s: key %q column %s: %w", h.cfg.Name, k, p.key[i].Name, err)
			}
			if args[i], err = h.value(table, p.key[i], kv); err != nil {
				return nil, err
			}
		}
		var one int
		err := h.db.QueryRowContext(ctx, q, args...).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, fmt.Errorf("sqlmirror %s: check %s key %s: %w", h.cfg.Name, table, k, err)
		default:
			out = append(out, consumer.Mismatch{Table: table, Key: k, Kind: consumer.MismatchExtra,
				Detail: p.target + " has a row the source does not have"})
		}
	}
	return out, nil
}

// TargetKeys implements consumer.Checker. Keys are rendered from the target's
// text of each key column (bytes as hex), which matches the record key for the
// usual key types; CheckAbsent settles any doubt.
func (h *Handler) TargetKeys(ctx context.Context, table string, fn func(key string) error) error {
	p, err := h.keyPlan(ctx, table)
	if err != nil || p == nil {
		return err
	}
	exprs := make([]string, len(p.key))
	for i, col := range p.key {
		q := h.d.quote(p.keyNames[i])
		switch {
		case col.Kind() == schemas.KindBytes && h.cfg.Dialect == MySQL:
			exprs[i] = "LOWER(HEX(" + q + "))"
		case col.Kind() == schemas.KindBytes:
			exprs[i] = "encode(" + q + ", 'hex')"
		case h.cfg.Dialect == MySQL:
			exprs[i] = "CAST(" + q + " AS CHAR)"
		default:
			exprs[i] = q + "::text"
		}
	}
	rows, err := h.db.QueryContext(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM "+h.d.quote(p.target))
	if err != nil {
		return fmt.Errorf("sqlmirror %s: read the keys of %s: %w", h.cfg.Name, p.target, err)
	}
	defer rows.Close()
	vals := make([]sql.NullString, len(p.key))
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	db, tbl, _ := strings.Cut(table, ".")
	key := make([]byte, 0, 64)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		key = append(append(append(append(key[:0], db...), '.'), tbl...), ':')
		for i, v := range vals {
			if i > 0 {
				key = append(key, ',')
			}
			switch {
			case !v.Valid:
				key = append(key, `\N`...)
			case p.key[i].Kind() == schemas.KindBytes:
				key = append(append(key, "0x"...), v.String...)
			case p.key[i].Kind() == schemas.KindString:
				key = schemas.AppendKeyValue(key, v.String)
			default:
				key = append(key, v.String...)
			}
		}
		if err := fn(string(key)); err != nil {
			return err
		}
	}
	return rows.Err()
}
