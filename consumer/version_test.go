package consumer

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// canalUpdate is a FlatMessage as Canal writes it: several rows, an UPDATE whose
// old holds only the changed columns, one of which moves the row's key.
const canalUpdate = `{"data":[{"id":"1","v":"b"},{"id":"7","v":"x"}],"database":"shop","es":1,"id":3,"isDdl":false,` +
	`"mysqlType":{"id":"bigint(20)","v":"varchar(8)"},"old":[{"v":"a"},{"id":"2"}],"pkNames":["id"],"sql":"",` +
	`"sqlType":{"id":-5,"v":12},"table":"t","ts":2,"type":"UPDATE"}`

// TestDecodeVersions: records without kanal.seq (Canal's) get versions derived
// from offset and row, increasing within the message and from offset to offset;
// records with it keep the producer's sequence.
func TestDecodeVersions(t *testing.T) {
	dec := &recordDecoder{dec: schemas.NewDecoder()}
	decode := func(ctx context.Context, kr *kgo.Record) ([]Record, error) { return dec.decode(ctx, nil, kr) }
	canal := func(offset int64) []Record {
		t.Helper()
		recs, err := decode(context.Background(), &kgo.Record{Topic: "kanal.shop.t", Partition: 2, Offset: offset, Value: []byte(canalUpdate)})
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	first, second := canal(10), canal(11)
	// Row 1 moved from key 2 to key 7: a delete of the old key, then a create.
	wantOps := []schemas.Op{schemas.OpUpdate, schemas.OpDelete, schemas.OpCreate}
	wantKeys := []string{"shop.t:1", "shop.t:2", "shop.t:7"}
	if len(first) != 3 {
		t.Fatalf("%d records, want 3", len(first))
	}
	var prev uint64
	for i, r := range append(first, second...) {
		if r.Seq <= prev || r.Seq < OffsetVersionBase || r.Seq >= 1<<63 {
			t.Fatalf("record %d: version %d after %d: not increasing within [2^62, 2^63)", i, r.Seq, prev)
		}
		if r.Change.Seq != r.Seq {
			t.Errorf("record %d: Change.Seq %d != Record.Seq %d", i, r.Change.Seq, r.Seq)
		}
		prev = r.Seq
	}
	for i, r := range first {
		if r.Op != wantOps[i] || r.Key != wantKeys[i] || r.Row != i {
			t.Errorf("record %d: %s %s row %d, want %s %s row %d", i, r.Op, r.Key, r.Row, wantOps[i], wantKeys[i], i)
		}
		if want, _ := OffsetVersion(10, i); r.Seq != want {
			t.Errorf("record %d: version %d, want %d", i, r.Seq, want)
		}
	}
	if first[1].Change.Before["v"] != "x" || first[1].Change.After != nil || first[2].Change.Before != nil {
		t.Errorf("key move: delete %+v, create %+v", first[1].Change, first[2].Change)
	}

	// A kanal record (here canal-json written by kanal, with its headers) keeps its sequence.
	one := `{"data":[{"id":"1","v":"b"}],"database":"shop","es":1,"id":3,"isDdl":false,"mysqlType":{"id":"bigint","v":"varchar"},` +
		`"old":null,"pkNames":["id"],"sql":"","sqlType":{"id":-5,"v":12},"table":"t","ts":2,"type":"INSERT"}`
	recs, err := decode(context.Background(), &kgo.Record{Offset: 12, Value: []byte(one), Headers: []kgo.RecordHeader{
		{Key: schemas.HeaderSeq, Value: []byte("42")}, {Key: schemas.HeaderFormat, Value: []byte(schemas.FormatCanalJSON)}}})
	if err != nil || len(recs) != 1 || recs[0].Seq != 42 || recs[0].Change.Seq != 42 {
		t.Fatalf("kanal record: %+v %v", recs, err)
	}

	// A kanal.seq of 0 (a truncate written before the source's first change) is
	// kanal's, not a missing one: no derived version.
	recs, err = decode(context.Background(), &kgo.Record{Offset: 13, Value: []byte(one), Headers: []kgo.RecordHeader{
		{Key: schemas.HeaderSeq, Value: []byte("0")}, {Key: schemas.HeaderFormat, Value: []byte(schemas.FormatCanalJSON)}}})
	if err != nil || len(recs) != 1 || recs[0].Seq != 0 {
		t.Fatalf("kanal record with kanal.seq 0: %+v %v", recs, err)
	}

	if _, err := OffsetVersion(1<<42, 0); !errors.Is(err, ErrNoVersion) {
		t.Errorf("offset 2^42: %v, want ErrNoVersion", err)
	}
	if _, err := OffsetVersion(0, 1<<20); !errors.Is(err, ErrNoVersion) {
		t.Errorf("row 2^20: %v, want ErrNoVersion", err)
	}
	if v, err := OffsetVersion(1<<42-1, 1<<20-1); err != nil || v != 1<<63-1 {
		t.Errorf("largest: %d %v, want 2^63-1", v, err)
	}
}

// TestCheckVersionsRefusesMix: a kanal record after Canal records in one
// partition is refused (its lower sequence would be ignored by versioned sinks);
// the other order is fine.
func TestCheckVersionsRefusesMix(t *testing.T) {
	rec := func(seq uint64) Record {
		return Record{Topic: "kanal.shop.t", Key: "shop.t:1", Table: "shop.t", Seq: seq}
	}
	w := &worker{}
	if err := w.checkVersions([]Record{rec(5), rec(OffsetVersionBase + 9), {Tombstone: true, Seq: 3}}); err != nil {
		t.Fatalf("kanal then Canal: %v", err)
	}
	err := w.checkVersions([]Record{rec(6)})
	if !errors.Is(err, ErrMixedVersions) {
		t.Fatalf("Canal then kanal: %v, want ErrMixedVersions", err)
	}
	for _, s := range []string{"shop.t:1", "kanal.shop.t/0", strconv.Itoa(6)} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
}
