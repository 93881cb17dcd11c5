package producer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/internal/charset"
	"github.com/kanal-cdc/kanal/schemas"
)

// ErrCharset means a captured column's character set is one kanal cannot decode
// (the message names the table, the column and the character set).
var ErrCharset = errors.New("unsupported column character set")

// sourceText is what decoding the source's text needs: which character set each
// collation id stands for, and the flavor, because MariaDB's table maps count
// GEOMETRY columns among the text columns whose collations they list.
type sourceText struct {
	collations *charset.Collations
	mariadb    bool
	// lookup asks the server for the character set of a collation id kanal's
	// list lacks (one newer than kanal); nil when there is no server to ask.
	lookup func(id uint64) (string, bool)
}

// serverCollation returns the server's name of the character set of collation
// id: what sourceText.lookup does for a session. It runs when a table map names
// an unknown id, rarely, and the list of a server is long (1,242 collations on
// MariaDB 10.11), so the server is asked for that one id only.
func serverCollation(db *sql.DB, log *slog.Logger) func(id uint64) (string, bool) {
	return func(id uint64) (string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, table := range []string{
			"COLLATIONS",
			// MariaDB 10.10+ lists the ids of its UCA 14.0 collations only here.
			"COLLATION_CHARACTER_SET_APPLICABILITY",
		} {
			var name sql.NullString
			q := "SELECT CHARACTER_SET_NAME FROM information_schema." + table + " WHERE ID = " + strconv.FormatUint(id, 10)
			err := db.QueryRowContext(ctx, q).Scan(&name)
			if err == nil && name.Valid {
				return name.String, true
			}
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				log.Debug("collation lookup", "id", id, "err", err)
			}
		}
		return "", false
	}
}

// columnCollations returns, for every column, the collation id of its text
// (CHAR, VARCHAR, TEXT; BINARY and BLOB have the "binary" collation) and of its
// ENUM or SET labels, from the table map's charset metadata; 0 where a column has
// none. The metadata lists collations by text column (or by ENUM/SET column) in
// one of two forms: a default with exceptions, or one per column.
func (st *sourceText) columnCollations(tm *replication.TableMapEvent) []uint64 {
	n := int(tm.ColumnCount)
	out := make([]uint64, n)
	fill := func(include func(t byte) bool, def, perCol []uint64) {
		var idx []int // columns of the kind, in order
		for i := 0; i < n && i < len(tm.ColumnType); i++ {
			if include(realType(tm.ColumnType[i], tm.ColumnMeta[i])) {
				idx = append(idx, i)
			}
		}
		switch {
		case len(def) > 0:
			for _, c := range idx {
				out[c] = def[0]
			}
			for k := 1; k+1 < len(def); k += 2 {
				if p := int(def[k]); p < len(idx) {
					out[idx[p]] = def[k+1]
				}
			}
		case len(perCol) > 0:
			for p, c := range idx {
				if p < len(perCol) {
					out[c] = perCol[p]
				}
			}
		}
	}
	fill(func(t byte) bool {
		switch t {
		case mysql.MYSQL_TYPE_STRING, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BLOB:
			return true
		case mysql.MYSQL_TYPE_GEOMETRY:
			return st.mariadb
		}
		return false
	}, tm.DefaultCharset, tm.ColumnCharset)
	fill(func(t byte) bool { return t == mysql.MYSQL_TYPE_ENUM || t == mysql.MYSQL_TYPE_SET }, tm.EnumSetDefaultCharset, tm.EnumSetColumnCharset)
	return out
}

// charsetOf returns the character set of collation id for a column, or an error
// that names the table, the column and what to do.
func (st *sourceText) charsetOf(tm *replication.TableMapEvent, col int, id uint64) (*charset.Charset, error) {
	if _, known := st.collations.Name(id); !known && st.lookup != nil {
		if name, ok := st.lookup(id); ok {
			st.collations.Add(id, name)
		}
	}
	cs, err := st.collations.Charset(id)
	if err != nil {
		name := string(tm.ColumnName[col])
		return nil, fmt.Errorf("%w: %s.%s column %s: %w; exclude the table (tables.exclude) or convert the column, e.g. "+
			"ALTER TABLE `%s`.`%s` CONVERT TO CHARACTER SET utf8mb4",
			ErrCharset, tm.Schema, tm.Table, name, err, tm.Schema, tm.Table)
	}
	return cs, nil
}

// labels converts ENUM or SET labels, which the table map carries in the
// column's character set, to UTF-8.
func labels(cs *charset.Charset, ls []string) []string {
	var out []string
	for i, l := range ls {
		b := []byte(l)
		if cs == nil || cs.AsIs(b) {
			continue
		}
		if out == nil {
			out = slices.Clone(ls)
		}
		u, _ := cs.AppendUTF8(nil, b)
		out[i] = string(u)
	}
	if out == nil {
		return ls
	}
	return out
}

// text returns the value of a text column's bytes b: b itself when it is UTF-8
// already (no copy: see colDecoder.decode on why the event's bytes can be used),
// else its UTF-8 decoding appended to *buf. Bytes invalid in the character set
// become U+FFFD and the value is marked (schemas.InvalidTextValue).
//
// What it returns is valid UTF-8 (checked, or made so), which the value tells
// the JSON encoder (schemas.UTF8BytesValue): it then need not decode the text's
// characters again.
func (d *colDecoder) text(b []byte, buf *[]byte) schemas.Value {
	if d.cs == nil {
		return schemas.StringBytesValue(b)
	}
	if d.cs.AsIs(b) {
		return schemas.UTF8BytesValue(b)
	}
	start := len(*buf)
	var bad int
	*buf, bad = d.cs.AppendUTF8(*buf, b)
	out := (*buf)[start:len(*buf):len(*buf)]
	if bad > 0 {
		return schemas.InvalidTextValue(unsafe.String(unsafe.SliceData(out), len(out)))
	}
	return schemas.UTF8BytesValue(out)
}
