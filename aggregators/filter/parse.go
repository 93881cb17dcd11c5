package filter

import (
	"fmt"
	"strings"

	"github.com/kanal-cdc/kanal/aggregators/internal/decimal"
)

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
	literal struct{ v any } // nil, string or decimal.Decimal
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

// Condition is a parsed filter.
type Condition struct{ n node }

// Parse parses a filter. Errors say what was expected and where (the byte
// offset in src and the token found there).
func Parse(src string) (*Condition, error) {
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
	return &Condition{n}, nil
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
		d, err := decimal.Parse(t.text)
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
			d, err := decimal.Parse(t.text + n.text)
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
			var d decimal.Decimal
			if lower == "true" {
				d = decimal.FromInt64(1)
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
