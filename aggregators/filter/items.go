package filter

import (
	"fmt"
	"strings"
)

// Group is a parsed group-by item: a column, or a derived function of one,
// optionally "AS name".
type Group struct {
	// Column is the source column.
	Column string
	// Func is "day", "month", "year" or "hour" for a derived group (see Derive);
	// "" groups by the column's value.
	Func string
	// As is the name given with AS, "" when none.
	As string
}

// Value computes a derived group's value from row (Derive of the column).
func (g Group) Value(row map[string]any) (any, error) {
	v, ok := row[g.Column]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrNoColumn, g.Column)
	}
	return Derive(g.Func, v)
}

// ParseGroup parses a group-by item: "col", "day(col)", month, year or hour of
// a column, each optionally "AS name".
func ParseGroup(item string) (Group, error) {
	expr, name, err := splitAs(item)
	if err != nil {
		return Group{}, err
	}
	toks, err := lex(expr)
	if err != nil {
		return Group{}, err
	}
	p := &parser{toks: toks}
	v, err := p.value()
	if err != nil {
		return Group{}, err
	}
	if p.peek().kind != tEOF {
		return Group{}, p.errorf("a group is a column or day/month/year/hour(column)")
	}
	switch x := v.(type) {
	case *colRef:
		return Group{Column: x.name, As: name}, nil
	case *call:
		return Group{Column: x.arg.name, Func: x.fn, As: name}, nil
	}
	return Group{}, fmt.Errorf("a group is a column or day/month/year/hour(column), not a literal")
}

// Measure is a parsed measure: count or the sum of a column, optionally
// "AS name".
type Measure struct {
	// Count is set for "count" and "count(*)".
	Count bool
	// Column is the summed column of "sum(col)".
	Column string
	// As is the name given with AS, "" when none.
	As string
}

// ParseMeasure parses a measure: "count", "count(*)" or "sum(col)", each
// optionally "AS name".
func ParseMeasure(item string) (Measure, error) {
	expr, name, err := splitAs(item)
	if err != nil {
		return Measure{}, err
	}
	toks, err := lex(expr)
	if err != nil {
		return Measure{}, err
	}
	texts := make([]string, 0, len(toks))
	for _, t := range toks[:len(toks)-1] {
		texts = append(texts, t.text)
	}
	switch {
	case len(texts) == 1 && strings.EqualFold(texts[0], "count"),
		len(texts) == 4 && strings.EqualFold(texts[0], "count") && texts[1] == "(" && texts[2] == "*" && texts[3] == ")":
		return Measure{Count: true, As: name}, nil
	case len(texts) == 4 && strings.EqualFold(texts[0], "sum") && texts[1] == "(" && texts[3] == ")" &&
		(toks[2].kind == tIdent || toks[2].kind == tQuotedIdent):
		return Measure{Column: texts[2], As: name}, nil
	}
	return Measure{}, fmt.Errorf("%q: a measure is count, count(*) or sum(column), optionally AS name", item)
}

// splitAs splits "expr AS name".
func splitAs(item string) (expr, name string, err error) {
	toks, err := lex(item)
	if err != nil {
		return "", "", err
	}
	n := len(toks) - 1 // without EOF
	if n >= 3 && toks[n-2].kind == tIdent && strings.EqualFold(toks[n-2].text, "as") &&
		(toks[n-1].kind == tIdent || toks[n-1].kind == tQuotedIdent) {
		return strings.TrimSpace(item[:toks[n-2].pos]), toks[n-1].text, nil
	}
	return strings.TrimSpace(item), "", nil
}
