package filter

import (
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
	"github.com/kanal-cdc/kanal/schemas"
)

// tri is SQL's three-valued logic.
type tri int8

const (
	triFalse tri = iota
	triTrue
	triUnknown
)

func triOf(b bool) tri {
	if b {
		return triTrue
	}
	return triFalse
}

// ErrNoColumn is wrapped when an expression names a column the row does not have.
var ErrNoColumn = errors.New("no such column")

// Match reports whether row satisfies the condition: only when it is true, not
// when it is false or unknown (NULL), as in SQL's WHERE. A column the row does not
// have is an error wrapping ErrNoColumn, as is a derived function of a value that
// is not a date or time.
func (c *Condition) Match(row map[string]any) (bool, error) {
	v, err := evalBool(c.n, row)
	return v == triTrue, err
}

// evalValue evaluates a value node against a row.
func evalValue(n node, row map[string]any) (any, error) {
	switch x := n.(type) {
	case *literal:
		return x.v, nil
	case *colRef:
		v, ok := row[x.name]
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrNoColumn, x.name)
		}
		return v, nil
	case *call:
		v, err := evalValue(x.arg, row)
		if err != nil {
			return nil, err
		}
		return Derive(x.fn, v)
	}
	return nil, fmt.Errorf("not a value: %T", n)
}

// evalBool evaluates a condition with SQL's NULL semantics.
func evalBool(n node, row map[string]any) (tri, error) {
	switch x := n.(type) {
	case *andNode:
		l, err := evalBool(x.l, row)
		if err != nil {
			return triUnknown, err
		}
		if l == triFalse {
			return triFalse, nil
		}
		r, err := evalBool(x.r, row)
		if err != nil {
			return triUnknown, err
		}
		if r == triFalse {
			return triFalse, nil
		}
		if l == triTrue && r == triTrue {
			return triTrue, nil
		}
		return triUnknown, nil
	case *orNode:
		l, err := evalBool(x.l, row)
		if err != nil {
			return triUnknown, err
		}
		if l == triTrue {
			return triTrue, nil
		}
		r, err := evalBool(x.r, row)
		if err != nil {
			return triUnknown, err
		}
		if r == triTrue {
			return triTrue, nil
		}
		if l == triFalse && r == triFalse {
			return triFalse, nil
		}
		return triUnknown, nil
	case *notNode:
		v, err := evalBool(x.x, row)
		if err != nil || v == triUnknown {
			return triUnknown, err
		}
		return triOf(v == triFalse), nil
	case *isNullNode:
		v, err := evalValue(x.x, row)
		if err != nil {
			return triUnknown, err
		}
		return triOf((v == nil) != x.not), nil
	case *cmpNode:
		l, err := evalValue(x.l, row)
		if err != nil {
			return triUnknown, err
		}
		r, err := evalValue(x.r, row)
		if err != nil {
			return triUnknown, err
		}
		c, ok := compare(l, r)
		if !ok {
			return triUnknown, nil
		}
		switch x.op {
		case "=":
			return triOf(c == 0), nil
		case "!=":
			return triOf(c != 0), nil
		case "<":
			return triOf(c < 0), nil
		case "<=":
			return triOf(c <= 0), nil
		case ">":
			return triOf(c > 0), nil
		default:
			return triOf(c >= 0), nil
		}
	case *inNode:
		v, err := evalValue(x.x, row)
		if err != nil {
			return triUnknown, err
		}
		res := triFalse
		for _, item := range x.list {
			iv, err := evalValue(item, row)
			if err != nil {
				return triUnknown, err
			}
			c, ok := compare(v, iv)
			if !ok {
				res = triUnknown
				continue
			}
			if c == 0 {
				res = triTrue
				break
			}
		}
		if x.not && res != triUnknown {
			res = triOf(res == triFalse)
		}
		return res, nil
	case *betweenNode:
		v, err := evalValue(x.x, row)
		if err != nil {
			return triUnknown, err
		}
		lo, err := evalValue(x.lo, row)
		if err != nil {
			return triUnknown, err
		}
		hi, err := evalValue(x.hi, row)
		if err != nil {
			return triUnknown, err
		}
		a, aok := compare(v, lo)
		b, bok := compare(v, hi)
		// v >= lo AND v <= hi, with NULL semantics.
		res := triAnd(triCmp(a >= 0, aok), triCmp(b <= 0, bok))
		if x.not && res != triUnknown {
			res = triOf(res == triFalse)
		}
		return res, nil
	}
	return triUnknown, fmt.Errorf("not a condition: %T", n)
}

func triCmp(b, ok bool) tri {
	if !ok {
		return triUnknown
	}
	return triOf(b)
}

func triAnd(a, b tri) tri {
	switch {
	case a == triFalse || b == triFalse:
		return triFalse
	case a == triTrue && b == triTrue:
		return triTrue
	}
	return triUnknown
}

// numeric returns v as a rational when it is a number or numeric text.
func numeric(v any) (*big.Rat, bool) {
	switch x := v.(type) {
	case decimal.Decimal:
		return x.Rat(), true
	case string:
		d, err := decimal.Parse(strings.TrimSpace(x))
		if err != nil {
			return nil, false
		}
		return d.Rat(), true
	case []byte:
		return nil, false
	}
	d, ok, err := decimal.Of(v)
	if err != nil || !ok {
		return nil, false
	}
	return d.Rat(), true
}

// Text renders a value as the language compares it as text: strings and bytes
// as they are, numbers in their decimal text. Summaries key their groups by the
// same rendering.
func Text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case schemas.Decimal:
		return string(x)
	case decimal.Decimal:
		return x.String()
	}
	return fmt.Sprint(v)
}

// compare orders two values: as numbers when both are numbers (or numeric text),
// otherwise as text (byte order). ok is false when either is NULL.
func compare(a, b any) (int, bool) {
	if a == nil || b == nil {
		return 0, false
	}
	_, aStr := a.(string)
	_, bStr := b.(string)
	if !(aStr && bStr) {
		if ra, ok := numeric(a); ok {
			if rb, ok := numeric(b); ok {
				return ra.Cmp(rb), true
			}
		}
	}
	return strings.Compare(Text(a), Text(b)), true
}
