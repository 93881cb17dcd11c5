package aggregators

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/kanal-cdc/kanal/schemas"
)

// The expression language of filters, group-by items and measures. It is parsed
// and evaluated in Go against a change's row; no part of it is ever sent to a
// database, so it cannot inject SQL.
//
//	filter   = or
//	or       = and { OR and }
//	and      = not { AND not }
//	not      = NOT not | pred
//	pred     = "(" or ")" | value [ cmp value | [NOT] IN "(" value {"," value} ")"
//	           | IS [NOT] NULL | [NOT] BETWEEN value AND value ]
//	value    = column | literal | func "(" column ")"
//	literal  = 'text' ('' inside is one quote) | number | NULL | TRUE | FALSE
//	cmp      = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//	func     = day | month | year | hour
//	column   = name | `name` | "name"

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tQuotedIdent
	tString
	tNumber
	tOp
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(src) {
					return nil, fmt.Errorf("unterminated string at %d", i)
				}
				if src[j] == '\'' {
					if j+1 < len(src) && src[j+1] == '\'' {
						b.WriteByte('\'')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(src[j])
				j++
			}
			toks = append(toks, token{tString, b.String(), i})
			i = j + 1
		case c == '`' || c == '"':
			j := strings.IndexByte(src[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated quoted name at %d", i)
			}
			name := src[i+1 : i+1+j]
			if name == "" {
				return nil, fmt.Errorf("empty quoted name at %d", i)
			}
			toks = append(toks, token{tQuotedIdent, name, i})
			i += j + 2
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(src) && src[i+1] >= '0' && src[i+1] <= '9':
			j := i
			for j < len(src) && (src[j] >= '0' && src[j] <= '9' || src[j] == '.') {
				j++
			}
			if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
				k := j + 1
				if k < len(src) && (src[k] == '+' || src[k] == '-') {
					k++
				}
				if k < len(src) && src[k] >= '0' && src[k] <= '9' {
					for k < len(src) && src[k] >= '0' && src[k] <= '9' {
						k++
					}
					j = k
				}
			}
			toks = append(toks, token{tNumber, src[i:j], i})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || src[j] >= '0' && src[j] <= '9') {
				j++
			}
			toks = append(toks, token{tIdent, src[i:j], i})
			i = j
		default:
			for _, op := range []string{"<=", ">=", "<>", "!=", "=", "<", ">", "(", ")", ",", "*", "-", "+"} {
				if strings.HasPrefix(src[i:], op) {
					toks = append(toks, token{tOp, op, i})
					i += len(op)
					goto next
				}
			}
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		next:
		}
	}
	return append(toks, token{tEOF, "", len(src)}), nil
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// keyword reports whether the next token is the (unquoted, case-insensitive)
// keyword kw, and consumes it if so.
func (p *parser) keyword(kw string) bool {
	t := p.peek()
	if t.kind == tIdent && strings.EqualFold(t.text, kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) op(op string) bool {
	t := p.peek()
	if t.kind == tOp && t.text == op {
		p.i++
		return true
	}
	return false
}

func (p *parser) errorf(format string, args ...any) error {
	t := p.peek()
	where := "at end"
	if t.kind != tEOF {
		where = fmt.Sprintf("at %d (%q)", t.pos, t.text)
	}
	return fmt.Errorf("%s %s", fmt.Sprintf(format, args...), where)
}

var reserved = map[string]bool{"and": true, "or": true, "not": true, "in": true, "is": true, "null": true,
	"between": true, "true": true, "false": true, "as": true}

// node is a parsed expression.
type node interface{}

type (
	colRef  struct{ name string }
	literal struct{ v any } // nil, string or decimal
	call    struct {
		fn  string
		arg *colRef
	}
	cmpNode struct {
		op   string
		l, r node
	}
	inNode struct {
		x    node
		list []node
		not  bool
	}
	isNullNode struct {
		x   node
		not bool
	}
	betweenNode struct {
		x, lo, hi node
		not       bool
	}
	andNode struct{ l, r node }
	orNode  struct{ l, r node }
	notNode struct{ x node }
)

var derivedFuncs = map[string]bool{"day": true, "month": true, "year": true, "hour": true}

// parseFilter parses a boolean filter expression.
func parseFilter(src string) (node, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.peek().kind != tEOF {
		return nil, p.errorf("unexpected input")
	}
	if !isBool(n) {
		return nil, fmt.Errorf("not a condition (compare a column, e.g. status = 'settled')")
	}
	return n, nil
}

func isBool(n node) bool {
	switch n.(type) {
	case *cmpNode, *inNode, *isNullNode, *betweenNode, *andNode, *orNode, *notNode:
		return true
	}
	return false
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &orNode{l, r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &andNode{l, r}
	}
	return l, nil
}

func (p *parser) not() (node, error) {
	if p.keyword("not") {
		x, err := p.not()
		if err != nil {
			return nil, err
		}
		if !isBool(x) {
			return nil, p.errorf("NOT needs a condition")
		}
		return &notNode{x}, nil
	}
	return p.pred()
}

func (p *parser) pred() (node, error) {
	if p.op("(") {
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.op(")") {
			return nil, p.errorf("expected )")
		}
		if !isBool(n) {
			return nil, p.errorf("parenthesised value is not a condition")
		}
		return n, nil
	}
	x, err := p.value()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t.kind == tOp {
		switch t.text {
		case "=", "!=", "<>", "<", "<=", ">", ">=":
			p.next()
			r, err := p.value()
			if err != nil {
				return nil, err
			}
			op := t.text
			if op == "<>" {
				op = "!="
			}
			return &cmpNode{op, x, r}, nil
		}
	}
	if p.keyword("is") {
		not := p.keyword("not")
		if !p.keyword("null") {
			return nil, p.errorf("expected NULL after IS")
		}
		return &isNullNode{x, not}, nil
	}
	not := p.keyword("not")
	switch {
	case p.keyword("in"):
		if !p.op("(") {
			return nil, p.errorf("expected ( after IN")
		}
		in := &inNode{x: x, not: not}
		for {
			v, err := p.value()
			if err != nil {
				return nil, err
			}
			in.list = append(in.list, v)
			if p.op(")") {
				break
			}
			if !p.op(",") {
				return nil, p.errorf("expected , or ) in IN list")
			}
		}
		return in, nil
	case p.keyword("between"):
		lo, err := p.value()
		if err != nil {
			return nil, err
		}
		if !p.keyword("and") {
			return nil, p.errorf("expected AND in BETWEEN")
		}
		hi, err := p.value()
		if err != nil {
			return nil, err
		}
		return &betweenNode{x, lo, hi, not}, nil
	case not:
		return nil, p.errorf("expected IN or BETWEEN after NOT")
	}
	return nil, p.errorf("expected a comparison")
}

// value parses a column, a literal or a derived function call.
func (p *parser) value() (node, error) {
	t := p.peek()
	switch t.kind {
	case tString:
		p.next()
		return &literal{t.text}, nil
	case tNumber:
		p.next()
		d, err := parseDecimal(t.text)
		if err != nil {
			return nil, fmt.Errorf("bad number %q at %d", t.text, t.pos)
		}
		return &literal{d}, nil
	case tOp:
		if t.text == "-" || t.text == "+" {
			p.next()
			n := p.peek()
			if n.kind != tNumber {
				return nil, p.errorf("expected a number after %s", t.text)
			}
			p.next()
			d, err := parseDecimal(t.text + n.text)
			if err != nil {
				return nil, fmt.Errorf("bad number %q at %d", n.text, n.pos)
			}
			return &literal{d}, nil
		}
	case tQuotedIdent:
		p.next()
		return &colRef{t.text}, nil
	case tIdent:
		lower := strings.ToLower(t.text)
		switch lower {
		case "null":
			p.next()
			return &literal{nil}, nil
		case "true", "false":
			p.next()
			d := decimal{}
			if lower == "true" {
				d.unscaled.SetInt64(1)
			}
			return &literal{d}, nil
		}
		if reserved[lower] {
			return nil, p.errorf("unexpected keyword")
		}
		p.next()
		if p.op("(") {
			if !derivedFuncs[lower] {
				return nil, fmt.Errorf("unknown function %q at %d (day, month, year, hour)", t.text, t.pos)
			}
			arg := p.next()
			if arg.kind != tIdent && arg.kind != tQuotedIdent || arg.kind == tIdent && reserved[strings.ToLower(arg.text)] {
				return nil, fmt.Errorf("%s() takes a column name, at %d", lower, arg.pos)
			}
			if !p.op(")") {
				return nil, p.errorf("expected ) after %s(%s", lower, arg.text)
			}
			return &call{lower, &colRef{arg.text}}, nil
		}
		return &colRef{t.text}, nil
	}
	return nil, p.errorf("expected a column, a literal or a function")
}

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

// errNoColumn is wrapped when an expression names a column the row does not have.
var errNoColumn = errors.New("no such column")

// evalValue evaluates a value node against a row.
func evalValue(n node, row map[string]any) (any, error) {
	switch x := n.(type) {
	case *literal:
		return x.v, nil
	case *colRef:
		v, ok := row[x.name]
		if !ok {
			return nil, fmt.Errorf("%w %q", errNoColumn, x.name)
		}
		return v, nil
	case *call:
		v, err := evalValue(x.arg, row)
		if err != nil {
			return nil, err
		}
		return derive(x.fn, v)
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
	case decimal:
		return x.Rat(), true
	case string:
		d, err := parseDecimal(strings.TrimSpace(x))
		if err != nil {
			return nil, false
		}
		return d.Rat(), true
	case []byte:
		return nil, false
	}
	d, ok, err := decimalOf(v)
	if err != nil || !ok {
		return nil, false
	}
	return d.Rat(), true
}

// text renders a value for a text comparison.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case schemas.Decimal:
		return string(x)
	case decimal:
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
	return strings.Compare(text(a), text(b)), true
}

// derive computes day/month/year/hour of a DATE, DATETIME or TIMESTAMP value.
// NULL and MySQL zero dates give NULL.
func derive(fn string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s() needs a DATE, DATETIME or TIMESTAMP value, got %T", fn, v)
	}
	t, zero, err := parseTime(s)
	if err != nil {
		return nil, fmt.Errorf("%s(): %w", fn, err)
	}
	if zero {
		return nil, nil
	}
	switch fn {
	case "day":
		return t.Format("2006-01-02"), nil
	case "month":
		return t.Format("2006-01") + "-01", nil
	case "year":
		return int64(t.Year()), nil
	default: // hour
		return t.Format("2006-01-02 15") + ":00:00", nil
	}
}

// parseTime reads kanal's DATE, DATETIME and TIMESTAMP renderings.
func parseTime(s string) (t time.Time, zero bool, err error) {
	if strings.HasPrefix(s, "0000-00-00") || strings.Contains(s[min(len(s), 4):min(len(s), 10)], "-00") {
		return t, true, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02", time.RFC3339Nano} {
		if t, err = time.Parse(layout, s); err == nil {
			return t.UTC(), false, nil
		}
	}
	return t, false, fmt.Errorf("%q is not a date or time", s)
}
