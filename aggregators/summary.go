package aggregators

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"

	"github.com/kanal-cdc/kanal/aggregators/filter"
	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
	"github.com/kanal-cdc/kanal/schemas"
)

// Row is a source row as a change carries it: column name → value, with the Go
// types listed in package schemas (int64, uint64, schemas.Decimal, float32,
// float64, string, []byte, nil for NULL).
type Row map[string]any

// Summary is one summary table kept by an Aggregator: for every group of source
// rows (GroupBy) that pass Filter, the number of rows and the sums of Sums.
//
// It is the Go form of SummaryConfig; config files compile to it
// (SummaryConfig.Compile), and programs can write one directly with Go functions
// for the filter, group values and summed values.
type Summary struct {
	// Table is the target table: "name" or "schema.name". It is created if
	// missing (see docs/aggregators.md for the DDL), together with its state table
	// "<name>_kanal_rows".
	Table string
	// Source is the source table, "db.table".
	Source string
	// Filter decides whether a row counts; nil counts every row. A row whose
	// filter outcome changes moves in or out of the summary.
	Filter func(Row) (bool, error)
	// GroupBy are the group columns, in order. None: one group for the whole table.
	GroupBy []Group
	// Sums are the summed columns.
	Sums []Sum
	// CountColumn names the row-count column; "row_count" when empty. Every summary
	// has it: a group whose count drops to 0 is deleted. avg(x) is Sum x / count.
	CountColumn string
}

// Group is one group-by column of a Summary.
type Group struct {
	// Column is the target column name.
	Column string
	// SourceColumn is the row column the value comes from when Value is nil, and
	// the column whose type the target column gets when Type is empty.
	SourceColumn string
	// Value computes the group value from the row (derived groups); nil uses
	// SourceColumn. It returns one of the Row value types.
	Value func(Row) (any, error)
	// Type is the target column's SQL type; empty infers it from SourceColumn's
	// type in the changes (see docs/aggregators.md).
	Type string

	// derived is day, month, year or hour for groups compiled from a config;
	// their type depends on the target database.
	derived string
}

// Sum is one summed column of a Summary. Sums are exact: integer and DECIMAL
// values add up without rounding; FLOAT and DOUBLE values are added as their
// shortest decimal form. NULL adds nothing (the sum is COALESCE(SUM(x), 0)).
type Sum struct {
	// Column is the target column name.
	Column string
	// SourceColumn is the row column summed when Value is nil, and the column whose
	// scale the target column gets when Type is empty.
	SourceColumn string
	// Value computes the value to sum from the row; nil uses SourceColumn. It
	// returns int64, uint64, schemas.Decimal, a float, decimal text or nil.
	Value func(Row) (any, error)
	// Type is the target column's SQL type; empty: numeric (Postgres) or
	// DECIMAL(65, scale of SourceColumn) (MySQL).
	Type string
}

var (
	identRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,49}$`)
	sqlTypeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_ ]*(\([0-9]+( *, *[0-9]+)?\))?( [A-Za-z][A-Za-z0-9_ ]*)?$`)
	sourceRE  = regexp.MustCompile(`^[^.\s]+\.[^.\s]+$`)
)

// reservedColumns are the columns kanal adds to every summary table.
var reservedColumns = map[string]bool{"kanal_group": true}

func checkTable(name string) error {
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return fmt.Errorf("%q must be name or schema.name", name)
	}
	for _, p := range parts {
		if !identRE.MatchString(p) {
			return fmt.Errorf("%q: %q must be 1-50 letters, digits or '_', not starting with a digit", name, p)
		}
	}
	return nil
}

// validate checks s and names the first bad field, prefixed with where.
func (s *Summary) validate(where string) error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s%s: %s", ErrConfig, where, field, fmt.Sprintf(format, args...))
	}
	if err := checkTable(s.Table); err != nil {
		return bad("table", "%v", err)
	}
	if !sourceRE.MatchString(s.Source) {
		return bad("source", "%q must be db.table", s.Source)
	}
	cols := map[string]bool{}
	addCol := func(field, name string) error {
		if !identRE.MatchString(name) {
			return bad(field, "column %q must be 1-50 letters, digits or '_', not starting with a digit", name)
		}
		l := strings.ToLower(name)
		if cols[l] || reservedColumns[l] {
			return bad(field, "column %q is used twice (or is reserved)", name)
		}
		cols[l] = true
		return nil
	}
	if err := addCol("count", s.countColumn()); err != nil {
		return err
	}
	for i, g := range s.GroupBy {
		f := fmt.Sprintf("group_by[%d]", i)
		if err := addCol(f, g.Column); err != nil {
			return err
		}
		if g.Value == nil && g.SourceColumn == "" {
			return bad(f, "needs SourceColumn or Value")
		}
		if g.Type == "" && g.SourceColumn == "" && g.derived == "" {
			return bad(f, "a computed group needs a Type")
		}
		if g.Type != "" && !sqlTypeRE.MatchString(g.Type) {
			return bad(f, "type %q is not a plain SQL type name", g.Type)
		}
	}
	for i, m := range s.Sums {
		f := fmt.Sprintf("sums[%d]", i)
		if err := addCol(f, m.Column); err != nil {
			return err
		}
		if m.Value == nil && m.SourceColumn == "" {
			return bad(f, "needs SourceColumn or Value")
		}
		if m.Type != "" && !sqlTypeRE.MatchString(m.Type) {
			return bad(f, "type %q is not a plain SQL type name", m.Type)
		}
	}
	return nil
}

func (s *Summary) countColumn() string {
	if s.CountColumn == "" {
		return "row_count"
	}
	return s.CountColumn
}

// SummaryConfig is a summary table declared in the configuration file.
//
//   - table: user_earnings
//     source: shop.earnings
//     where: status = 'settled'
//     group_by: [user_id, "day(created_at) AS day"]
//     measures: ["count AS earnings", "sum(amount) AS total"]
type SummaryConfig struct {
	// Table is the target table ("name" or "schema.name").
	Table string `yaml:"table"`
	// Source is the source table, "db.table".
	Source string `yaml:"source"`
	// Where is an optional row filter: comparisons (= != <> < <= > >=), IN,
	// BETWEEN, IS [NOT] NULL, AND, OR, NOT and parentheses over columns and
	// literals ('text', numbers, NULL, TRUE, FALSE). Evaluated in Go, never sent to
	// a database.
	Where string `yaml:"where"`
	// GroupBy items: a column, or day(col), month(col), year(col), hour(col) of a
	// DATE, DATETIME or TIMESTAMP column; each optionally "AS name". The target
	// column is named after the column ("day_created_at" for a derived one) unless
	// AS says otherwise.
	GroupBy []string `yaml:"group_by"`
	// Measures: "count" (or "count(*)") and "sum(col)", each optionally "AS name".
	// Defaults: row_count, sum_<col>. The row count is always kept.
	Measures []string `yaml:"measures"`
	// Types overrides the SQL type of target columns (column name → type).
	Types map[string]string `yaml:"types"`
}

// Compile turns the declaration into a Summary. Errors name the bad field.
func (c SummaryConfig) Compile() (Summary, error) {
	s := Summary{Table: c.Table, Source: c.Source}
	where := "summaries[" + c.Table + "]."
	bad := func(field string, err error) error {
		return fmt.Errorf("%w: %s%s: %w", ErrConfig, where, field, err)
	}
	if strings.TrimSpace(c.Where) != "" {
		cond, err := filter.Parse(c.Where)
		if err != nil {
			return s, bad("where", err)
		}
		s.Filter = func(r Row) (bool, error) { return cond.Match(r) }
	}
	for i, item := range c.GroupBy {
		g, err := parseGroupItem(item)
		if err != nil {
			return s, bad(fmt.Sprintf("group_by[%d]", i), err)
		}
		s.GroupBy = append(s.GroupBy, g)
	}
	for i, item := range c.Measures {
		name, col, isCount, err := parseMeasure(item)
		if err != nil {
			return s, bad(fmt.Sprintf("measures[%d]", i), err)
		}
		if isCount {
			if s.CountColumn != "" {
				return s, bad(fmt.Sprintf("measures[%d]", i), fmt.Errorf("count is given twice"))
			}
			s.CountColumn = name
			continue
		}
		s.Sums = append(s.Sums, Sum{Column: name, SourceColumn: col})
	}
	used := map[string]bool{}
	for i := range s.GroupBy {
		if t, ok := c.Types[s.GroupBy[i].Column]; ok {
			s.GroupBy[i].Type = t
			used[s.GroupBy[i].Column] = true
		}
	}
	for i := range s.Sums {
		if t, ok := c.Types[s.Sums[i].Column]; ok {
			s.Sums[i].Type = t
			used[s.Sums[i].Column] = true
		}
	}
	for col := range c.Types {
		if !used[col] {
			return s, bad("types", fmt.Errorf("%q is not a group or sum column", col))
		}
	}
	if err := s.validate(where); err != nil {
		return s, err
	}
	return s, nil
}

// parseGroupItem compiles a group-by item. The target column is named after
// the source column, "<func>_<column>" for a derived group, unless AS names it.
func parseGroupItem(item string) (Group, error) {
	g, err := filter.ParseGroup(item)
	if err != nil {
		return Group{}, err
	}
	name := g.As
	if g.Func == "" {
		if name == "" {
			name = g.Column
		}
		return Group{Column: name, SourceColumn: g.Column}, nil
	}
	if name == "" {
		name = g.Func + "_" + g.Column
	}
	return Group{Column: name, derived: g.Func, Value: func(r Row) (any, error) { return g.Value(r) }}, nil
}

// parseMeasure compiles a measure. The target column is named row_count for
// the count and sum_<column> for a sum, unless AS names it.
func parseMeasure(item string) (name, col string, isCount bool, err error) {
	m, err := filter.ParseMeasure(item)
	if err != nil {
		return "", "", false, err
	}
	name = m.As
	switch {
	case m.Count && name == "":
		name = "row_count"
	case !m.Count && name == "":
		name = "sum_" + m.Column
	}
	return name, m.Column, m.Count, nil
}

// contribution is what one source row adds to its summary.
type contribution struct {
	gkey   []byte
	groups []any // group values, in GroupBy order
	sums   []decimal.Decimal

	// Backing arrays for the common small summaries: one allocation per row
	// instead of three.
	groupsBuf [2]any
	sumsBuf   [2]decimal.Decimal
}

// maxMemo bounds a gkeyMemo: with many distinct groups per batch (per-user
// summaries) remembering them costs more than it saves.
const maxMemo = 64

// gkeyMemo maps the hashed encoding of group values (see groupKey) to their
// group key, within one batch: most rows of a batch fall into groups other
// rows of it already hashed.
type gkeyMemo map[string][]byte

// contribute computes the contribution of a row, or nil when the filter leaves it
// out.
func (s *Summary) contribute(row Row) (*contribution, error) { return s.contributeMemo(row, nil) }

// contributeMemo is contribute reusing the group keys of memo (nil: none).
func (s *Summary) contributeMemo(row Row, memo gkeyMemo) (*contribution, error) {
	if s.Filter != nil {
		ok, err := s.Filter(row)
		if err != nil {
			return nil, fmt.Errorf("filter: %w", err)
		}
		if !ok {
			return nil, nil
		}
	}
	c := &contribution{}
	if c.groups = c.groupsBuf[:0]; len(s.GroupBy) > len(c.groupsBuf) {
		c.groups = make([]any, 0, len(s.GroupBy))
	}
	c.groups = c.groups[:len(s.GroupBy)]
	if c.sums = c.sumsBuf[:0]; len(s.Sums) > len(c.sumsBuf) {
		c.sums = make([]decimal.Decimal, 0, len(s.Sums))
	}
	c.sums = c.sums[:len(s.Sums)]
	for i, g := range s.GroupBy {
		var v any
		var err error
		if g.Value != nil {
			v, err = g.Value(row)
		} else {
			var ok bool
			if v, ok = row[g.SourceColumn]; !ok {
				err = fmt.Errorf("%w %q", filter.ErrNoColumn, g.SourceColumn)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", g.Column, err)
		}
		if err := checkGroupValue(v); err != nil {
			return nil, fmt.Errorf("group %s: %w", g.Column, err)
		}
		c.groups[i] = v
	}
	c.gkey = groupKeyMemo(c.groups, memo)
	for i, m := range s.Sums {
		var v any
		var err error
		if m.Value != nil {
			v, err = m.Value(row)
		} else {
			var ok bool
			if v, ok = row[m.SourceColumn]; !ok {
				err = fmt.Errorf("%w %q", filter.ErrNoColumn, m.SourceColumn)
			}
		}
		if err == nil {
			c.sums[i], _, err = decimal.Of(v)
		}
		if err != nil {
			return nil, fmt.Errorf("sum %s: %w", m.Column, err)
		}
	}
	return c, nil
}

func checkGroupValue(v any) error {
	switch v.(type) {
	case nil, int64, uint64, schemas.Decimal, float32, float64, string, []byte, int, bool:
		return nil
	}
	return fmt.Errorf("unsupported group value type %T", v)
}

// groupKey is the identity of a group: a 16-byte hash of its values, each
// tagged with its kind (NULL, bytes, text, number), so that NULLs and composite
// groups need no special handling in any database.
func groupKey(vals []any) []byte { return groupKeyMemo(vals, nil) }

// groupKeyMemo is groupKey looking the values up in memo first (nil: none).
// Callers must not modify the key it returns: it may be shared.
func groupKeyMemo(vals []any, memo gkeyMemo) []byte {
	// One buffer and sha256.Sum256: a hash.Hash and its Sum allocate.
	var stack [128]byte
	buf := stack[:0]
	for _, v := range vals {
		var tag byte
		var s string
		switch x := v.(type) {
		case nil:
			tag = 0
		case []byte:
			tag, s = 'b', string(x)
		case string:
			tag, s = 's', x
		default:
			tag, s = 'n', filter.Text(v)
		}
		buf = append(buf, tag)
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	if k, ok := memo[string(buf)]; ok {
		return k
	}
	sum := sha256.Sum256(buf)
	k := append([]byte(nil), sum[:16]...)
	if memo != nil && len(memo) < maxMemo {
		memo[string(buf)] = k
	}
	return k
}
