package producer

import (
	"bytes"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// TestRowDecoderReachesGoMySQLFields fails when a go-mysql upgrade renames the
// RowsEvent fields rowDecoder reads: that would silently turn the fast path off for
// every event.
func TestRowDecoderReachesGoMySQLFields(t *testing.T) {
	d := newRowDecoder(filter{}, mariadbText(), nil)
	if d.compressedIdx == nil || d.eventTypeIdx == nil {
		t.Fatal("replication.RowsEvent has no compressed/eventType fields any more: rowDecoder is off")
	}
}

// TestTableFingerprintCoversShape checks that every part of a table map the
// decoders and envelopes depend on changes the fingerprint, so a cached table is
// never reused for a map that would decode differently.
func TestTableFingerprintCoversShape(t *testing.T) {
	base := func() *replication.TableMapEvent {
		return &replication.TableMapEvent{
			TableID: 7, Schema: []byte("shop"), Table: []byte("users"), ColumnCount: 3,
			ColumnType:       []byte{mysql.MYSQL_TYPE_LONGLONG, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_STRING},
			ColumnMeta:       []uint16{0, 255, 0xf701},
			NullBitmap:       []byte{0b110},
			SignednessBitmap: []byte{0},
			ColumnName:       [][]byte{[]byte("id"), []byte("name"), []byte("state")},
			PrimaryKey:       []uint64{0},
			DefaultCharset:   []uint64{45},
			ColumnCharset:    nil,
			EnumStrValue:     [][][]byte{{[]byte("new"), []byte("paid")}},
		}
	}
	want := tableFingerprint(base())
	if !bytes.Equal(tableFingerprint(base()), want) {
		t.Fatal("the same table map gives two fingerprints")
	}
	changes := map[string]func(*replication.TableMapEvent){
		"enum label":       func(tm *replication.TableMapEvent) { tm.EnumStrValue = [][][]byte{{[]byte("new"), []byte("shipped")}} },
		"enum label split": func(tm *replication.TableMapEvent) { tm.EnumStrValue = [][][]byte{{[]byte("newp"), []byte("aid")}} },
		"set labels":       func(tm *replication.TableMapEvent) { tm.SetStrValue = [][][]byte{{[]byte("a")}} },
		"default charset":  func(tm *replication.TableMapEvent) { tm.DefaultCharset = []uint64{63} },
		"column charset":   func(tm *replication.TableMapEvent) { tm.DefaultCharset, tm.ColumnCharset = nil, []uint64{45} },
		"enum charset":     func(tm *replication.TableMapEvent) { tm.EnumSetDefaultCharset = []uint64{8} },
		"nullability":      func(tm *replication.TableMapEvent) { tm.NullBitmap = []byte{0b100} },
		"signedness":       func(tm *replication.TableMapEvent) { tm.SignednessBitmap = []byte{0x80} },
		"primary key":      func(tm *replication.TableMapEvent) { tm.PrimaryKey = []uint64{0, 1} },
		"column name":      func(tm *replication.TableMapEvent) { tm.ColumnName[1] = []byte("nick") },
		"column meta":      func(tm *replication.TableMapEvent) { tm.ColumnMeta[1] = 1020 },
		"column type":      func(tm *replication.TableMapEvent) { tm.ColumnType[0] = mysql.MYSQL_TYPE_LONG },
	}
	for name, change := range changes {
		tm := base()
		change(tm)
		if bytes.Equal(tableFingerprint(tm), want) {
			t.Errorf("%s: fingerprint unchanged", name)
		}
	}
}
