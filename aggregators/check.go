package aggregators

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// The Aggregator implements consumer.Checker and consumer.GroupChecker for
// `kanal verify`. Rows: each source row's contribution to every summary of its
// table (its group and summed values, or none) is compared with the contribution
// stored for its key in the summary's state table. Groups: each summary row is
// compared with the sum of the contributions stored for its group, in one
// statement (one consistent read). Together: summary == the source's GROUP BY.

var (
	_ consumer.Checker      = (*Aggregator)(nil)
	_ consumer.GroupChecker = (*Aggregator)(nil)
)

// checkDB returns the target's database/sql pool, its identifier quote and how
// it renders a value as text.
func (a *Aggregator) checkDB() (db *sql.DB, q byte, text func(string) string, param func(int) string) {
	switch t := a.t.(type) {
	case *postgres:
		return t.db, '"', func(e string) string { return e + "::text" }, func(i int) string { return "$" + strconv.Itoa(i+1) }
	case *mysqlTarget:
		return t.db, '`', func(e string) string { return "CAST(" + e + " AS CHAR)" }, func(int) string { return "?" }
	}
	return nil, 0, nil, nil
}

// storedContributions reads the stored contributions of keys to s.
func (a *Aggregator) storedContributions(ctx context.Context, s *summaryRT, keys []string) (map[string]*rowState, error) {
	db, q, text, param := a.checkDB()
	cols := []string{"row_key", "kanal_group"}
	for _, m := range s.Sums {
		cols = append(cols, text(string(q)+m.Column+string(q)))
	}
	out := map[string]*rowState{}
	for start := 0; start < len(keys); start += 500 {
		chunk := keys[start:min(len(keys), start+500)]
		ps := make([]string, len(chunk))
		args := make([]any, len(chunk))
		for i, k := range chunk {
			ps[i], args[i] = param(i), k
		}
		rows, err := db.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+quoteTable(s.rowsTable, q)+
			" WHERE row_key IN ("+strings.Join(ps, ", ")+")", args...)
		if err != nil {
			return nil, fmt.Errorf("state table %s: %w", s.rowsTable, err)
		}
		sums := make([]*string, len(s.Sums))
		for rows.Next() {
			st := &rowState{}
			dest := []any{&st.key, &st.gkey}
			for i := range sums {
				dest = append(dest, &sums[i])
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("state table %s: %w", s.rowsTable, err)
			}
			if err := st.parseSums(s, sums); err != nil {
				rows.Close()
				return nil, fmt.Errorf("state table %s: %w", s.rowsTable, err)
			}
			out[st.key] = st
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckRows implements consumer.Checker.
func (a *Aggregator) CheckRows(ctx context.Context, table string, rows []*schemas.Change) ([]consumer.Mismatch, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	found := map[string]*consumer.Mismatch{}
	var order []string
	note := func(key, kind, detail string) {
		m := found[key]
		if m == nil {
			m = &consumer.Mismatch{Table: table, Key: key, Kind: kind}
			found[key] = m
			order = append(order, key)
		}
		if kind == consumer.MismatchDiffers {
			m.Kind = kind
		}
		if m.Detail != "" {
			m.Detail += "; "
		}
		m.Detail += detail
	}
	keys := make([]string, len(rows))
	for i, c := range rows {
		keys[i] = c.Key()
	}
	for _, s := range a.bySource[table] {
		ready, err := a.ensure(ctx, s, rows[0].Columns)
		if err != nil {
			return nil, fmt.Errorf("summary %s: %w", s.Table, err)
		}
		stored := map[string]*rowState{}
		if ready {
			if stored, err = a.storedContributions(ctx, s, keys); err != nil {
				return nil, err
			}
		}
		for i, c := range rows {
			want, err := s.contribute(Row(c.After))
			if err != nil {
				return nil, fmt.Errorf("summary %s: key %s: %w", s.Table, keys[i], err)
			}
			have := stored[keys[i]]
			if have != nil && have.gkey == nil {
				have = nil
			}
			switch {
			case want == nil && have == nil:
			case want != nil && have == nil:
				note(keys[i], consumer.MismatchMissing, "not counted in "+s.Table)
			case want == nil:
				note(keys[i], consumer.MismatchDiffers, "counted in "+s.Table+" though its filter leaves the row out")
			case !bytes.Equal(want.gkey, have.gkey):
				note(keys[i], consumer.MismatchDiffers, "counted in another group of "+s.Table)
			default:
				for j := range want.sums {
					if !want.sums[j].Equal(&have.sums[j]) {
						note(keys[i], consumer.MismatchDiffers, fmt.Sprintf("%s.%s counts %s (source %s)", s.Table, s.Sums[j].Column, have.sums[j].String(), want.sums[j].String()))
					}
				}
			}
		}
	}
	out := make([]consumer.Mismatch, 0, len(order))
	for _, k := range order {
		out = append(out, *found[k])
	}
	return out, nil
}

// CheckAbsent implements consumer.Checker.
func (a *Aggregator) CheckAbsent(ctx context.Context, table string, keys []string) ([]consumer.Mismatch, error) {
	var out []consumer.Mismatch
	seen := map[string]bool{}
	for _, s := range a.bySource[table] {
		if !s.isReady() {
			continue
		}
		stored, err := a.storedContributions(ctx, s, keys)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if st := stored[k]; st != nil && st.gkey != nil && !seen[k] {
				seen[k] = true
				out = append(out, consumer.Mismatch{Table: table, Key: k, Kind: consumer.MismatchExtra, Detail: "still counted in " + s.Table})
			}
		}
	}
	return out, nil
}

// TargetKeys implements consumer.Checker: the keys counted in some summary of
// table.
func (a *Aggregator) TargetKeys(ctx context.Context, table string, fn func(key string) error) error {
	db, q, _, _ := a.checkDB()
	for _, s := range a.bySource[table] {
		if !s.isReady() {
			continue
		}
		rows, err := db.QueryContext(ctx, "SELECT row_key FROM "+quoteTable(s.rowsTable, q)+" WHERE kanal_group IS NOT NULL")
		if err != nil {
			return fmt.Errorf("state table %s: %w", s.rowsTable, err)
		}
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return err
			}
			if err := fn(k); err != nil {
				rows.Close()
				return err
			}
		}
		if err := rows.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (s *summaryRT) isReady() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// groupsSQL selects the summary rows that differ from the sum of their rows'
// stored contributions, and the groups with contributions but no summary row:
// hex group id, whether the summary row is missing, then the summary's and the
// rows' count and sums, then the summary's group values, as text.
func (a *Aggregator) groupsSQL(s *summaryRT) string {
	_, q, text, _ := a.checkDB()
	qc := func(c string) string { return string(q) + c + string(q) }
	summary, rowsT := quoteTable(s.Table, q), quoteTable(s.rowsTable, q)
	agg := []string{"kanal_group AS g", "COUNT(*) AS n"}
	for i, m := range s.Sums {
		agg = append(agg, "SUM("+qc(m.Column)+") AS s"+strconv.Itoa(i))
	}
	r := "(SELECT " + strings.Join(agg, ", ") + " FROM " + rowsT + " WHERE kanal_group IS NOT NULL GROUP BY kanal_group)"
	hexOf := func(e string) string {
		if q == '`' {
			return "LOWER(HEX(" + e + "))"
		}
		return "encode(" + e + ", 'hex')"
	}
	differ := []string{"r.g IS NULL", "s." + qc(s.countColumn()) + " <> r.n"}
	sel := []string{"s." + qc(s.countColumn()), "r.n"}
	for i, m := range s.Sums {
		rs := "COALESCE(r.s" + strconv.Itoa(i) + ", 0)"
		if q == '`' {
			differ = append(differ, "NOT (s."+qc(m.Column)+" <=> "+rs+")")
		} else {
			differ = append(differ, "s."+qc(m.Column)+" IS DISTINCT FROM "+rs)
		}
		sel = append(sel, "s."+qc(m.Column), rs)
	}
	for _, g := range s.GroupBy {
		sel = append(sel, "s."+qc(g.Column))
	}
	for i := range sel {
		sel[i] = text(sel[i])
	}
	left := "SELECT " + hexOf("s.kanal_group") + ", 0, " + strings.Join(sel, ", ") + " FROM " + summary + " s LEFT JOIN " + r +
		" r ON r.g = s.kanal_group WHERE " + strings.Join(differ, " OR ")
	missing := make([]string, len(sel))
	for i := range missing {
		missing[i] = "NULL"
	}
	missing[1] = text("r.n")
	for i := range s.Sums {
		missing[3+2*i] = text("COALESCE(r.s" + strconv.Itoa(i) + ", 0)")
	}
	right := "SELECT " + hexOf("r.g") + ", 1, " + strings.Join(missing, ", ") + " FROM " + r + " r LEFT JOIN " + summary +
		" s ON s.kanal_group = r.g WHERE s.kanal_group IS NULL"
	return left + " UNION ALL " + right
}

// CheckGroups implements consumer.GroupChecker.
func (a *Aggregator) CheckGroups(ctx context.Context) ([]consumer.Mismatch, error) {
	db, _, _, _ := a.checkDB()
	var out []consumer.Mismatch
	for _, s := range a.sums {
		if !s.isReady() {
			continue
		}
		rows, err := db.QueryContext(ctx, a.groupsSQL(s))
		if err != nil {
			return nil, fmt.Errorf("summary %s: compare with %s: %w", s.Table, s.rowsTable, err)
		}
		n := 2 + 2*len(s.Sums) + len(s.GroupBy)
		for rows.Next() {
			var gid string
			var absent int
			vals := make([]sql.NullString, n)
			dest := []any{&gid, &absent}
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, err
			}
			g, _ := hex.DecodeString(gid)
			m := consumer.Mismatch{Table: s.Table, Kind: consumer.MismatchGroup, Group: g}
			var groupVals []string
			for _, v := range vals[2+2*len(s.Sums):] {
				groupVals = append(groupVals, orNULL(v))
			}
			m.Key = strings.Join(groupVals, ",")
			var det []string
			switch {
			case absent == 1:
				m.Key = "0x" + gid
				det = append(det, fmt.Sprintf("no summary row; %s rows counted in it", orNULL(vals[1])))
			case !vals[1].Valid:
				det = append(det, "no row is counted in this group")
			default:
				if vals[0] != vals[1] {
					det = append(det, fmt.Sprintf("%s %s (rows: %s)", s.countColumn(), orNULL(vals[0]), orNULL(vals[1])))
				}
				for i, sm := range s.Sums {
					have, want := vals[2+2*i], vals[3+2*i]
					if !sameDecimal(have, want) {
						det = append(det, fmt.Sprintf("%s %s (rows: %s)", sm.Column, orNULL(have), orNULL(want)))
					}
				}
			}
			m.Detail = strings.Join(det, "; ")
			out = append(out, m)
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Table != out[j].Table {
			return out[i].Table < out[j].Table
		}
		return out[i].Key < out[j].Key
	})
	return out, nil
}

func orNULL(v sql.NullString) string {
	if !v.Valid {
		return "NULL"
	}
	return v.String
}

func sameDecimal(a, b sql.NullString) bool {
	if a.Valid != b.Valid {
		return false
	}
	if !a.Valid {
		return true
	}
	x, err1 := decimal.Parse(a.String)
	y, err2 := decimal.Parse(b.String)
	if err1 != nil || err2 != nil {
		return a.String == b.String
	}
	return x.Equal(&y)
}

// RepairGroups implements consumer.GroupChecker: a summary row is set to the sum
// of its rows' stored contributions (and deleted when none is stored). A group
// with contributions but no summary row cannot be rebuilt from them (the state
// table holds the group's hash, not its values): those rows' stored
// contributions are removed and their keys returned, so that a backfill of the
// keys counts them again, summary row included.
func (a *Aggregator) RepairGroups(ctx context.Context, groups []consumer.Mismatch) (map[string][]string, error) {
	byTable := map[string][]consumer.Mismatch{}
	for _, g := range groups {
		if g.Kind == consumer.MismatchGroup {
			byTable[g.Table] = append(byTable[g.Table], g)
		}
	}
	out := map[string][]string{}
	for _, s := range a.sums {
		gs := byTable[s.Table]
		if len(gs) == 0 {
			continue
		}
		keys, err := a.repairSummary(ctx, s, gs)
		if err != nil {
			return nil, fmt.Errorf("summary %s: repair: %w", s.Table, err)
		}
		out[s.Source] = append(out[s.Source], keys...)
	}
	return out, nil
}

func (a *Aggregator) repairSummary(ctx context.Context, s *summaryRT, gs []consumer.Mismatch) ([]string, error) {
	db, q, _, param := a.checkDB()
	qc := func(c string) string { return string(q) + c + string(q) }
	summary, rowsT := quoteTable(s.Table, q), quoteTable(s.rowsTable, q)
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	// Batches of the handler write the summary rows too: they wait until this
	// transaction commits (or it waits for them), so that every batch's delta
	// lands either before the sums read here or on top of them.
	if q == '"' {
		if _, err := tx.ExecContext(ctx, "LOCK TABLE "+summary+" IN EXCLUSIVE MODE"); err != nil {
			return nil, err
		}
	}
	var keys []string
	for _, g := range gs {
		if q == '`' {
			if _, err := tx.ExecContext(ctx, "SELECT 1 FROM "+summary+" WHERE kanal_group = ? FOR UPDATE", g.Group); err != nil {
				return nil, err
			}
		}
		var n int64
		sumCols := make([]string, len(s.Sums))
		for i, m := range s.Sums {
			sumCols[i] = "COALESCE(SUM(" + qc(m.Column) + "), 0)"
		}
		agg := "SELECT COUNT(*)"
		if len(sumCols) > 0 {
			agg += ", " + strings.Join(sumCols, ", ")
		}
		row := tx.QueryRowContext(ctx, agg+" FROM "+rowsT+" WHERE kanal_group = "+param(0), g.Group)
		sums := make([]sql.NullString, len(s.Sums))
		dest := []any{&n}
		for i := range sums {
			dest = append(dest, &sums[i])
		}
		if err := row.Scan(dest...); err != nil {
			return nil, err
		}
		var exists int
		err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+summary+" WHERE kanal_group = "+param(0), g.Group).Scan(&exists)
		if err != nil {
			return nil, err
		}
		switch {
		case n == 0:
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+summary+" WHERE kanal_group = "+param(0), g.Group); err != nil {
				return nil, err
			}
		case exists == 0:
			rows, err := tx.QueryContext(ctx, "SELECT row_key FROM "+rowsT+" WHERE kanal_group = "+param(0), g.Group)
			if err != nil {
				return nil, err
			}
			for rows.Next() {
				var k string
				if err := rows.Scan(&k); err != nil {
					rows.Close()
					return nil, err
				}
				keys = append(keys, k)
			}
			if err := rows.Close(); err != nil {
				return nil, err
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+rowsT+" WHERE kanal_group = "+param(0), g.Group); err != nil {
				return nil, err
			}
		default:
			set := []string{qc(s.countColumn()) + " = " + param(0)}
			args := []any{n}
			for i, m := range s.Sums {
				set = append(set, qc(m.Column)+" = "+param(i+1))
				args = append(args, sums[i].String)
			}
			args = append(args, g.Group)
			if _, err := tx.ExecContext(ctx, "UPDATE "+summary+" SET "+strings.Join(set, ", ")+" WHERE kanal_group = "+param(len(args)-1), args...); err != nil {
				return nil, err
			}
		}
	}
	return keys, tx.Commit()
}
