package cdctest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// CharsetColumn is one text column of the charset table: its name and type.
type CharsetColumn struct {
	Name, Def string
}

// CharsetColumns are the columns of the table CreateCharsetTable makes: one text
// column per character set kanal decodes (CHAR, VARCHAR and the TEXT sizes,
// ENUM and SET labels in other character sets than the table's), a GEOMETRY
// column before them (MariaDB counts it among the text columns' collations), a
// JSON column and a binary one.
var CharsetColumns = []CharsetColumn{
	{"g", "GEOMETRY NULL"},
	{"latin1", "VARCHAR(80) CHARACTER SET latin1"},
	{"ascii", "VARCHAR(80) CHARACTER SET ascii"},
	{"utf8mb3", "VARCHAR(80) CHARACTER SET utf8mb3"},
	{"utf8mb4", "TEXT CHARACTER SET utf8mb4"},
	{"gbk", "VARCHAR(80) CHARACTER SET gbk"},
	{"gb2312", "TEXT CHARACTER SET gb2312"},
	{"big5", "MEDIUMTEXT CHARACTER SET big5"},
	{"sjis", "CHAR(40) CHARACTER SET sjis"},
	{"cp932", "VARCHAR(80) CHARACTER SET cp932"},
	{"ujis", "VARCHAR(80) CHARACTER SET ujis"},
	{"eucjpms", "TINYTEXT CHARACTER SET eucjpms"},
	{"euckr", "VARCHAR(80) CHARACTER SET euckr"},
	{"ucs2", "CHAR(40) CHARACTER SET ucs2"},
	{"utf16", "VARCHAR(80) CHARACTER SET utf16"},
	{"utf16le", "TEXT CHARACTER SET utf16le"},
	{"utf32", "CHAR(40) CHARACTER SET utf32"},
	{"cp1250", "VARCHAR(80) CHARACTER SET cp1250"},
	{"cp1251", "VARCHAR(80) CHARACTER SET cp1251"},
	{"cp1256", "VARCHAR(80) CHARACTER SET cp1256"},
	{"cp1257", "VARCHAR(80) CHARACTER SET cp1257"},
	{"latin2", "VARCHAR(80) CHARACTER SET latin2"},
	{"latin5", "VARCHAR(80) CHARACTER SET latin5"},
	{"latin7", "VARCHAR(80) CHARACTER SET latin7"},
	{"koi8r", "VARCHAR(80) CHARACTER SET koi8r"},
	{"koi8u", "VARCHAR(80) CHARACTER SET koi8u"},
	{"greek", "VARCHAR(80) CHARACTER SET greek"},
	{"hebrew", "VARCHAR(80) CHARACTER SET hebrew"},
	{"tis620", "VARCHAR(80) CHARACTER SET tis620"},
	{"cp850", "VARCHAR(80) CHARACTER SET cp850"},
	{"cp852", "VARCHAR(80) CHARACTER SET cp852"},
	{"cp866", "VARCHAR(80) CHARACTER SET cp866"},
	{"macroman", "VARCHAR(80) CHARACTER SET macroman"},
	{"e", "ENUM('café', 'Zürich', '€uro', 'plain') CHARACTER SET latin1"},
	{"st", "SET('汉', '字', 'a') CHARACTER SET gbk"},
	{"j", "JSON"},
	{"bin", "VARBINARY(20)"},
}

// CharsetWords are the words the charset table's rows are made of; each text
// column gets those its character set has.
var CharsetWords = []string{"é", "ß", "€", "漢字", "汉字", "ひらがな", "カタカナ", "한글", "Ωλ", "Ж", "🎉", "café", "Ärger", "¢",
	"ภาษา", "שלום", "سلام", "Łódź", "naïve", "ü", "plain"}

// CreateCharsetTable creates table (db.name) with an id, a latin1 key part k
// and CharsetColumns. Without the GEOMETRY, SET and JSON columns (simple), every
// column has a type the producer's own row decoder handles; with them, rows
// take go-mysql's decoder.
func CreateCharsetTable(t testing.TB, db *sql.DB, table string, simple bool) {
	t.Helper()
	defs := []string{"id INT NOT NULL", "k VARCHAR(20) CHARACTER SET latin1 NOT NULL"}
	for _, c := range CharsetColumns {
		if !simple || !complexColumn[c.Name] {
			defs = append(defs, "`"+c.Name+"` "+c.Def)
		}
	}
	defs = append(defs, "PRIMARY KEY (id, k)")
	if _, err := db.Exec("CREATE TABLE " + table + " (" + strings.Join(defs, ", ") + ") CHARACTER SET utf8mb4"); err != nil {
		t.Fatal(err)
	}
}

// complexColumn are the charset table's columns CreateCharsetTable leaves out
// when asked for a simple table.
var complexColumn = map[string]bool{"g": true, "st": true, "j": true}

// representable reports whether the server can store s in character set cs.
func representable(t testing.TB, db *sql.DB, cs, s string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow("SELECT CONVERT(CONVERT(? USING "+cs+") USING utf8mb4) = ? COLLATE utf8mb4_bin", s, s).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// InsertCharsetRow inserts row (id, k) of a charset table: every text column
// holds, space-separated, the words of CharsetWords (rotated by shift) its
// character set has.
func InsertCharsetRow(t testing.TB, db *sql.DB, table string, id int, k string, shift int) {
	t.Helper()
	simple := !hasColumn(t, db, table, "g")
	cols := []string{"id", "k"}
	marks := []string{"?", "?"}
	args := []any{id, k}
	for _, c := range CharsetColumns {
		switch c.Name {
		case "g", "bin", "j", "e", "st":
			continue
		}
		var words []string
		for i := range CharsetWords {
			w := CharsetWords[(i+shift)%len(CharsetWords)]
			if representable(t, db, c.Name, w) {
				words = append(words, w)
			}
		}
		val := strings.Join(words, " ")
		if strings.HasPrefix(c.Def, "CHAR(") {
			val = truncateRunes(val, 40)
		}
		cols, marks, args = append(cols, "`"+c.Name+"`"), append(marks, "?"), append(args, val)
	}
	enum := []string{"café", "Zürich", "€uro"}[shift%3]
	cols = append(cols, "e", "bin")
	marks = append(marks, "?", "?")
	args = append(args, enum, []byte{0, 0xff, 0x80})
	if !simple {
		cols = append(cols, "g", "st", "j")
		marks = append(marks, "POINT(1, 2)", "?", "?")
		args = append(args, "汉,a", `{"k": "ключ €", "e": "🎉"}`)
	}
	q := "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(marks, ", ") + ")"
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("insert charset row %d: %v", id, err)
	}
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return strings.TrimRight(string(r[:n]), " ")
	}
	return s
}

func hasColumn(t testing.TB, db *sql.DB, table, col string) bool {
	t.Helper()
	dbName, tbl, _ := strings.Cut(table, ".")
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
		dbName, tbl, col).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// CharsetTextColumns are the columns of a charset table whose values are text.
func CharsetTextColumns(t testing.TB, db *sql.DB, table string) []string {
	t.Helper()
	simple := !hasColumn(t, db, table, "g")
	cols := []string{"k"}
	for _, c := range CharsetColumns {
		if c.Name != "g" && c.Name != "bin" && (!simple || !complexColumn[c.Name]) {
			cols = append(cols, c.Name)
		}
	}
	return cols
}

// ServerText returns, for every row of table keyed "id,k", what the server
// itself makes of each text column: CONVERT(col USING utf8mb4), read as hex so
// that no client conversion is involved. It is the oracle the charset tests
// compare kanal's text with.
func ServerText(t testing.TB, db *sql.DB, table string) map[string]map[string]string {
	t.Helper()
	cols := CharsetTextColumns(t, db, table)
	exprs := []string{"id", "HEX(CONVERT(k USING utf8mb4))"}
	for _, c := range cols {
		exprs = append(exprs, "HEX(CONVERT(`"+c+"` USING utf8mb4))")
	}
	rows, err := db.QueryContext(context.Background(), "SELECT "+strings.Join(exprs, ", ")+" FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var id int
		var k string
		vals := make([]sql.NullString, len(cols))
		ptrs := []any{&id, &k}
		for i := range vals {
			ptrs = append(ptrs, &vals[i])
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		kb, _ := hex.DecodeString(k)
		row := map[string]string{}
		for i, c := range cols {
			if !vals[i].Valid {
				continue
			}
			b, err := hex.DecodeString(vals[i].String)
			if err != nil {
				t.Fatal(err)
			}
			row[c] = string(b)
		}
		out[fmt.Sprintf("%d,%s", id, kb)] = row
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
