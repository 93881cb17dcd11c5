package producer

import (
	"encoding/binary"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// benchTable is a table map of (id BIGINT, name VARCHAR(100), note TEXT, qty INT)
// whose text columns have collation coll.
func benchTable(coll uint64) *replication.TableMapEvent {
	return &replication.TableMapEvent{
		TableID: 1, Schema: []byte("db"), Table: []byte("t"), ColumnCount: 4,
		ColumnType:     []byte{mysql.MYSQL_TYPE_LONGLONG, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_LONG},
		ColumnMeta:     []uint16{0, 200, 2, 0}, // VARCHAR(200) bytes: a one-byte length
		NullBitmap:     []byte{0x0e},
		ColumnName:     [][]byte{[]byte("id"), []byte("name"), []byte("note"), []byte("qty")},
		DefaultCharset: []uint64{coll},
		PrimaryKey:     []uint64{0},
	}
}

// benchRows is a rows event body of n rows of benchTable with the given text.
func benchRows(n int, name, note []byte) []byte {
	var b []byte
	for i := range n {
		b = append(b, 0) // no NULLs
		b = binary.LittleEndian.AppendUint64(b, uint64(i))
		b = append(b, byte(len(name)))
		b = append(b, name...)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(note)))
		b = append(b, note...)
		b = binary.LittleEndian.AppendUint32(b, uint32(i))
	}
	return b
}

// BenchmarkRowDecode decodes rows events of 50 rows: text that is UTF-8 already
// (utf8mb4, and ASCII in latin1) must stay on the zero-copy path, without
// allocations; latin1 text with accents is converted.
func BenchmarkRowDecode(b *testing.B) {
	for _, bc := range []struct {
		name       string
		coll       uint64
		text, note string
	}{
		{"utf8mb4", 45, "Zoë Müller 🎉", "a note about the order, with some words in it"},
		{"latin1-ascii", 8, "Zoe Muller", "a note about the order, with some words in it"},
		{"latin1", 8, "Zo\xeb M\xfcller \x80", "a note about the order, with some w\xf6rds in it"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := newRowDecoder(filter{}, mariadbText(), nil)
			p := d.plan(benchTable(bc.coll))
			if !p.fast {
				b.Fatal("not on the fast path")
			}
			body := benchRows(50, []byte(bc.text), []byte(bc.note))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			dr := &decodedRows{owner: d}
			for b.Loop() {
				dr.vals, dr.text, dr.images = dr.vals[:0], dr.text[:0], 0
				if !dr.decode(p, body, false) {
					b.Fatal("decode failed")
				}
			}
		})
	}
}
