package sinkconf

import (
	"fmt"
	"strings"
)

// Template is a parsed name template such as "kc:{db}.{table}:{pk}": literal
// text and placeholders, "{{" and "}}" standing for literal braces. Which
// placeholders exist is the caller's: it names them when parsing and gives
// their values, in the same order, when rendering.
type Template struct {
	lits  []string // len(refs)+1: the text before each placeholder, and after the last
	refs  []int    // the placeholders, as indexes into names
	names []string
}

// ParseTemplate parses s, whose placeholders must be among names. An error
// quotes s and says what is wrong with it: an unknown placeholder (listing
// the known ones), an unclosed '{' or a lone '}'.
func ParseTemplate(s string, names ...string) (Template, error) {
	t := Template{names: names}
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '{':
			j := strings.IndexByte(s[i+1:], '}')
			if j < 0 {
				return Template{}, fmt.Errorf("%q: unclosed '{'", s)
			}
			name := s[i+1 : i+1+j]
			ref := -1
			for k, n := range names {
				if n == name {
					ref = k
					break
				}
			}
			if ref < 0 {
				return Template{}, fmt.Errorf("%q: unknown placeholder {%s} (want %s)", s, name, placeholderList(names))
			}
			t.lits = append(t.lits, lit.String())
			lit.Reset()
			t.refs = append(t.refs, ref)
			i += j + 1
		case c == '}':
			return Template{}, fmt.Errorf("%q: unmatched '}' (write '}}' for a literal brace)", s)
		default:
			lit.WriteByte(c)
		}
	}
	t.lits = append(t.lits, lit.String())
	return t, nil
}

// placeholderList is "{a}", "{a} or {b}", "{a}, {b} or {c}".
func placeholderList(names []string) string {
	if len(names) == 0 {
		return "no placeholder"
	}
	var b strings.Builder
	for i, n := range names {
		switch {
		case i == 0:
		case i == len(names)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString("{" + n + "}")
	}
	return b.String()
}

// Static reports whether the template has no placeholder: it renders the same
// text for every record.
func (t *Template) Static() bool { return len(t.refs) == 0 }

// Uses reports whether the template has any of the named placeholders.
func (t *Template) Uses(names ...string) bool {
	for _, r := range t.refs {
		for _, n := range names {
			if t.names[r] == n {
				return true
			}
		}
	}
	return false
}

// Literals returns the template's literal text, placeholders left out: the
// part of every rendering that the configuration fixes.
func (t *Template) Literals() string { return strings.Join(t.lits, "") }

// Render returns the template filled in: values holds the value of each
// placeholder name given to ParseTemplate, in that order (a missing one is
// empty).
func (t *Template) Render(values ...string) string {
	if len(t.refs) == 0 {
		if len(t.lits) == 0 {
			return ""
		}
		return t.lits[0]
	}
	return string(t.Append(nil, nil, values...))
}

// Append appends the template filled in to dst, as Render does; add, when not
// nil, appends each piece (literal or value) instead of a plain copy, so that
// the caller can escape them.
func (t *Template) Append(dst []byte, add func(dst []byte, s string) []byte, values ...string) []byte {
	if add == nil {
		add = appendString
	}
	if len(t.lits) == 0 {
		return dst
	}
	for i, r := range t.refs {
		dst = add(dst, t.lits[i])
		if r < len(values) {
			dst = add(dst, values[r])
		}
	}
	return add(dst, t.lits[len(t.refs)])
}

func appendString(dst []byte, s string) []byte { return append(dst, s...) }
