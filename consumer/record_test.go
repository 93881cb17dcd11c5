package consumer

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// TestDecodeSnapshotRead: a snapshot read reaches handlers as OpRead in both
// formats; canal-json writes it as an INSERT and the kanal.op header keeps it.
func TestDecodeSnapshotRead(t *testing.T) {
	cols := []schemas.Column{{Name: "id", Type: "bigint", PK: true}, {Name: "v", Type: "varchar"}}
	for _, format := range []string{schemas.FormatJSON, schemas.FormatCanalJSON} {
		enc, err := schemas.NewEncoder(format, schemas.EncoderConfig{})
		if err != nil {
			t.Fatal(err)
		}
		te, err := enc.Table(&schemas.TableVersion{DB: "db", Table: "t", Columns: cols})
		if err != nil {
			t.Fatal(err)
		}
		src := &schemas.Source{Name: "s", DB: "db", Table: "t"}
		for _, op := range []schemas.Op{schemas.OpRead, schemas.OpCreate} {
			val, err := te.AppendValue(nil, &schemas.RowChange{Op: op, Seq: 9, Source: src, After: []schemas.Value{schemas.IntValue(1), schemas.StringValue("x")}})
			if err != nil {
				t.Fatal(err)
			}
			kr := &kgo.Record{Topic: "kanal.db.t", Key: []byte("db.t:1"), Value: val, Headers: []kgo.RecordHeader{
				{Key: schemas.HeaderOp, Value: []byte(op)}, {Key: schemas.HeaderSeq, Value: []byte("9")}, {Key: schemas.HeaderFormat, Value: []byte(format)}}}
			d := &recordDecoder{dec: schemas.NewDecoder()}
			recs, err := d.decode(context.Background(), nil, kr)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 1 || recs[0].Op != op || recs[0].Change.Op != op || recs[0].Seq != 9 {
				t.Errorf("%s %s: decoded %+v", format, op, recs)
			}
		}
	}
}

// TestRecordKeysOwned: a record's Key and Pos are its own copies, not the fetched bytes,
// and stays as read while later records fill and replace the shared key blocks
// and the Kafka records' bytes are overwritten (as a reused buffer would be).
func TestRecordKeysOwned(t *testing.T) {
	d := &recordDecoder{dec: schemas.NewDecoder()}
	var recs []Record
	var want []string
	for i := range 2000 {
		key := "db.t:" + strings.Repeat("k", i%300) + strconv.Itoa(i)
		if i%97 == 0 {
			key = ""
		}
		pos := "binlog.000001:" + strconv.Itoa(i/3)                                // a rows event's records share it
		kr := &kgo.Record{Topic: "kanal.db.t", Key: []byte(key), Offset: int64(i), // tombstones
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderPos, Value: []byte(pos)}}}
		var err error
		if recs, err = d.decode(context.Background(), recs, kr); err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{kr.Key, kr.Headers[0].Value} {
			for j := range b {
				b[j] = 'x'
			}
		}
		want = append(want, key, pos)
	}
	runtime.GC()
	for i, r := range recs {
		key, pos := want[2*i], want[2*i+1]
		if r.Key != key || r.Table != tableOfKey(key) || r.Pos != pos {
			t.Fatalf("record %d: key %q table %q pos %q, want %q, %q", i, r.Key, r.Table, r.Pos, key, pos)
		}
	}
}
