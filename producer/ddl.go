package producer

import (
	"strings"

	"github.com/kanal-cdc/kanal/schemas"
)

// Statements that are not row events reach the producer as text (QueryEvent):
// DDL, but also account statements such as CREATE USER … IDENTIFIED BY '…',
// which carry passwords. The producer classifies each statement from its tokens
// (comments skipped, MySQL's executable comments /*!…*/ read as code, any letter
// case, quoted names), acts on table DDL of captured tables, and never shows the
// text of anything else. Where text does appear (the log line of a captured
// table's DDL, schema-change records) it is redacted first.
//
// The tidb parser that go-mysql depends on was considered: it rejects MariaDB
// syntax kanal must follow (CREATE OR REPLACE TABLE, IDENTIFIED VIA …), so a
// fallback would be needed for exactly the statements whose text must not leak,
// and it needs a value-expression driver that only its test package provides.
// The tokenizer below is that fallback, made the only path.

// sqlToken is one token of a statement.
type sqlToken struct {
	kind byte   // 'w' word or keyword, 'q' quoted name, 's' string literal, 'p' punctuation, 'c' comment
	text string // words upper-cased; quoted names and strings unquoted; punctuation itself
	pos  int    // start in the statement
	end  int
}

// tokenizeSQL splits a statement into tokens. It never fails: text it cannot
// make sense of becomes punctuation, so classification errs towards "unknown".
func tokenizeSQL(q string) []sqlToken {
	var toks []sqlToken
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '#' || c == '-' && strings.HasPrefix(q[i:], "--") && (i+2 == len(q) || q[i+2] <= ' '):
			j := i
			for j < len(q) && q[j] != '\n' {
				j++
			}
			toks = append(toks, sqlToken{kind: 'c', text: q[i:j], pos: i, end: j})
			i = j
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			// /*!50100 … */ and MariaDB's /*M!100100 … */ hold code the server
			// runs: read on inside them (their closing */ is skipped below).
			j := i + 2
			if strings.HasPrefix(q[j:], "M!") {
				j++
			}
			if j < len(q) && q[j] == '!' {
				j++
				for j < len(q) && q[j] >= '0' && q[j] <= '9' {
					j++
				}
				i = j
				continue
			}
			end := len(q)
			if k := strings.Index(q[i+2:], "*/"); k >= 0 {
				end = i + 2 + k + 2
			}
			toks = append(toks, sqlToken{kind: 'c', text: q[i:end], pos: i, end: end})
			i = end
		case c == '*' && strings.HasPrefix(q[i:], "*/"):
			i += 2
		case c == '\'' || c == '"' || c == '`':
			text, end := unquoteSQL(q, i)
			kind := byte('s')
			if c == '`' {
				kind = 'q'
			}
			toks = append(toks, sqlToken{kind: kind, text: text, pos: i, end: end})
			i = end
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			toks = append(toks, sqlToken{kind: 'w', text: strings.ToUpper(q[i:j]), pos: i, end: j})
			i = j
		default:
			toks = append(toks, sqlToken{kind: 'p', text: q[i : i+1], pos: i, end: i + 1})
			i++
		}
	}
	return toks
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// unquoteSQL reads the quoted token starting at q[i] and returns its text and
// end. Doubled quotes stand for one; in strings a backslash escapes the next
// byte (MySQL's default; with NO_BACKSLASH_ESCAPES a string ending in a
// backslash is read too far, which only merges tokens).
func unquoteSQL(q string, i int) (string, int) {
	quote := q[i]
	var b strings.Builder
	for j := i + 1; j < len(q); j++ {
		c := q[j]
		switch {
		case c == '\\' && quote != '`' && j+1 < len(q):
			j++
			b.WriteByte(q[j])
		case c == quote:
			if j+1 < len(q) && q[j+1] == quote {
				b.WriteByte(quote)
				j++
				continue
			}
			return b.String(), j + 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), len(q)
}

// tableRef names a table in a statement; newDB/newTable are set for renames.
type tableRef struct {
	db, table, newDB, newTable string
}

// sqlStatement is what the producer learns from a statement's text.
type sqlStatement struct {
	// verb is the statement's leading keywords ("CREATE TABLE", "GRANT", …): what
	// may be logged about a statement whose text may not.
	verb string
	// kind is a schemas.Schema* kind for table DDL, "" otherwise.
	kind   string
	tables []tableRef
	// sensitive: an account statement (or one naming a password): its text is
	// never shown, not even redacted.
	sensitive bool
}

// accountVerbs start statements about accounts and privileges.
var accountVerbs = map[string]bool{"GRANT": true, "REVOKE": true}

// accountObjects follow CREATE/ALTER/DROP/RENAME in account statements.
var accountObjects = map[string]bool{"USER": true, "ROLE": true}

// parseStatement classifies a statement; defaultDB is the session's current
// database (QueryEvent.Schema), for unqualified table names.
func parseStatement(q, defaultDB string) sqlStatement {
	var toks []sqlToken
	for _, t := range tokenizeSQL(q) {
		if t.kind != 'c' {
			toks = append(toks, t)
		}
	}
	var st sqlStatement
	p := &tokParser{toks: toks, src: q, defaultDB: defaultDB}
	first := p.word()
	switch first {
	case "":
		return st
	case "SET":
		if p.peekWord() == "PASSWORD" || p.peekWord() == "DEFAULT" && p.peekWordAt(1) == "ROLE" {
			st.sensitive = true
		}
		st.verb = "SET"
		return st
	}
	if accountVerbs[first] {
		st.verb, st.sensitive = first, true
		return st
	}
	switch first {
	case "CREATE":
		p.skipWords("OR", "REPLACE", "DEFINER") // DEFINER=… comes with views and routines, not tables
		temporary := p.skipWords("TEMPORARY")
		obj := p.word()
		st.verb = "CREATE " + obj
		if accountObjects[obj] {
			st.sensitive = true
			return st
		}
		if obj != "TABLE" || temporary {
			return st // rows of temporary tables are not in a row-based binlog
		}
		p.skipWords("IF", "NOT", "EXISTS")
		if t, ok := p.name(); ok {
			st.kind, st.tables = schemas.SchemaCreate, []tableRef{t}
		}
	case "ALTER":
		p.skipWords("ONLINE", "OFFLINE", "IGNORE")
		obj := p.word()
		st.verb = "ALTER " + obj
		if accountObjects[obj] {
			st.sensitive = true
			return st
		}
		if obj != "TABLE" {
			return st
		}
		p.skipWords("IF", "EXISTS")
		t, ok := p.name()
		if !ok {
			return st
		}
		// ALTER TABLE t … RENAME [TO|AS] t2 also moves the table.
		for i := p.i; i < len(toks); i++ {
			if toks[i].kind == 'w' && toks[i].text == "RENAME" {
				p.i = i + 1
				if w := p.peekWord(); w == "COLUMN" || w == "INDEX" || w == "KEY" {
					continue
				}
				p.skipWords("TO", "AS")
				if n, ok := p.name(); ok {
					t.newDB, t.newTable = n.db, n.table
				}
				break
			}
		}
		st.kind, st.tables = schemas.SchemaAlter, []tableRef{t}
	case "DROP":
		temporary := p.skipWords("TEMPORARY")
		obj := p.word()
		st.verb = "DROP " + obj
		if accountObjects[obj] {
			st.sensitive = true
			return st
		}
		if obj != "TABLE" && obj != "TABLES" || temporary {
			return st
		}
		p.skipWords("IF", "EXISTS")
		for {
			t, ok := p.name()
			if !ok {
				break
			}
			st.tables = append(st.tables, t)
			if !p.punct(",") {
				break
			}
		}
		if len(st.tables) > 0 {
			st.kind = schemas.SchemaDrop
		}
	case "RENAME":
		obj := p.word()
		st.verb = "RENAME " + obj
		if accountObjects[obj] {
			st.sensitive = true
			return st
		}
		if obj != "TABLE" && obj != "TABLES" {
			return st
		}
		for {
			from, ok := p.name()
			if !ok || p.word() != "TO" {
				break
			}
			to, ok := p.name()
			if !ok {
				break
			}
			from.newDB, from.newTable = to.db, to.table
			st.tables = append(st.tables, from)
			if !p.punct(",") {
				break
			}
		}
		if len(st.tables) > 0 {
			st.kind = schemas.SchemaRename
		}
	case "TRUNCATE":
		st.verb = "TRUNCATE"
		p.skipWords("TABLE")
		if t, ok := p.name(); ok {
			st.kind, st.tables = schemas.SchemaTruncate, []tableRef{t}
		}
	default:
		st.verb = first
	}
	return st
}

// tokParser walks tokens.
type tokParser struct {
	toks      []sqlToken
	i         int
	src       string
	defaultDB string
}

func (p *tokParser) peekWordAt(k int) string {
	if p.i+k < len(p.toks) && p.toks[p.i+k].kind == 'w' {
		return p.toks[p.i+k].text
	}
	return ""
}

func (p *tokParser) peekWord() string { return p.peekWordAt(0) }

func (p *tokParser) word() string {
	w := p.peekWord()
	if w != "" {
		p.i++
	}
	return w
}

// skipWords skips any of words (and what follows DEFINER: "= user@host"), and
// reports whether it skipped one.
func (p *tokParser) skipWords(words ...string) bool {
	skipped := false
	for {
		w := p.peekWord()
		found := false
		for _, x := range words {
			if w == x {
				found = true
			}
		}
		if !found {
			return skipped
		}
		p.i++
		skipped = true
		if w == "DEFINER" {
			for p.i < len(p.toks) && p.peekWord() != "TABLE" && p.peekWord() != "VIEW" &&
				p.peekWord() != "TRIGGER" && p.peekWord() != "PROCEDURE" && p.peekWord() != "FUNCTION" && p.peekWord() != "EVENT" {
				p.i++
			}
		}
	}
}

func (p *tokParser) punct(s string) bool {
	if p.i < len(p.toks) && p.toks[p.i].kind == 'p' && p.toks[p.i].text == s {
		p.i++
		return true
	}
	return false
}

// ident reads a name part: a word (as written, not upper-cased) or a quoted name.
func (p *tokParser) ident() (string, bool) {
	if p.i >= len(p.toks) {
		return "", false
	}
	t := p.toks[p.i]
	switch t.kind {
	case 'q':
		p.i++
		return t.text, true
	case 'w':
		p.i++
		return p.src[t.pos:t.end], true
	}
	return "", false
}

// name reads [db.]table.
func (p *tokParser) name() (tableRef, bool) {
	first, ok := p.ident()
	if !ok {
		return tableRef{}, false
	}
	if p.punct(".") {
		second, ok := p.ident()
		if !ok {
			return tableRef{}, false
		}
		return tableRef{db: first, table: second}, true
	}
	return tableRef{db: p.defaultDB, table: first}, true
}

// redactSQL returns q with the string literals that may hold secrets replaced by
// '<redacted>': every literal after the word IDENTIFIED, PASSWORD or
// OLD_PASSWORD. Comments that mention IDENTIFIED or PASSWORD are replaced whole.
func redactSQL(q string) string {
	toks := tokenizeSQL(q)
	var b strings.Builder
	last := 0
	identified := false
	replace := func(t sqlToken, with string) {
		b.WriteString(q[last:t.pos])
		b.WriteString(with)
		last = t.end
	}
	for _, t := range toks {
		secret := false
		switch t.kind {
		case 'c':
			if u := strings.ToUpper(t.text); strings.Contains(u, "IDENTIFIED") || strings.Contains(u, "PASSWORD") {
				replace(t, "/* <redacted> */")
			}
			continue
		case 'w':
			// After IDENTIFIED or PASSWORD (SET PASSWORD FOR u = '…', IDENTIFIED BY
			// '…', PASSWORD('…')) every literal may be a secret. A column named
			// password costs the rest of its statement's literals; that errs on
			// the safe side.
			if t.text == "IDENTIFIED" || t.text == "PASSWORD" || t.text == "OLD_PASSWORD" {
				identified = true
			}
		case 's':
			secret = identified
		}
		if secret {
			replace(t, "'<redacted>'")
		}
	}
	b.WriteString(q[last:])
	return b.String()
}
