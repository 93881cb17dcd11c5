package producer

import (
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kanal-cdc/kanal/schemas"
)

func TestParseEnumLabels(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"enum('a','b')", []string{"a", "b"}},
		{"set('it''s','x,y','')", []string{"it's", "x,y", ""}},
		{"enum('é')", []string{"é"}},
	} {
		got, err := parseEnumLabels([]byte(tc.in))
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %q", tc.in, got)
		}
		for i := range got {
			if string(got[i]) != tc.want[i] {
				t.Errorf("%s: label %d %q, want %q", tc.in, i, got[i], tc.want[i])
			}
		}
	}
	if _, err := parseEnumLabels([]byte("enum(a)")); err == nil {
		t.Error("an unquoted label was accepted")
	}
}

// TestBinlogTypeMeta: the metadata packed for CHAR/BINARY, BIT, ENUM and SET
// decodes back to the length, bits and pack length the binlog decoder reads.
func TestBinlogTypeMeta(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 300, 767, 1020} {
		meta := fixedStringMeta(mysql.MYSQL_TYPE_STRING, n)
		if got := fixedStringLength(meta); got != n {
			t.Errorf("CHAR of %d bytes: meta %#x decodes to %d", n, meta, got)
		}
		if n > 0 && realType(mysql.MYSQL_TYPE_STRING, meta) != mysql.MYSQL_TYPE_STRING {
			t.Errorf("CHAR of %d bytes: real type %d", n, realType(mysql.MYSQL_TYPE_STRING, meta))
		}
	}
	_, meta, err := binlogType("bit", "bit(10)", 10, 0, 0, 0)
	if err != nil || (colDecoder{realType: mysql.MYSQL_TYPE_BIT, meta: meta}).typeName() != "bit(10)" {
		t.Errorf("bit(10): meta %#x, %v", meta, err)
	}
	_, meta, _ = binlogType("enum", "enum('a','b')", 0, 0, 0, 0)
	if realType(mysql.MYSQL_TYPE_STRING, meta) != mysql.MYSQL_TYPE_ENUM || meta&0xff != 1 {
		t.Errorf("enum: meta %#x", meta)
	}
	_, meta, _ = binlogType("set", "set('a','b','c','d','e','f','g','h','i')", 0, 0, 0, 0)
	if realType(mysql.MYSQL_TYPE_STRING, meta) != mysql.MYSQL_TYPE_SET || meta&0xff != 2 {
		t.Errorf("set of 9: meta %#x", meta)
	}
	for _, typ := range []string{"json", "inet6", "uuid", "vector"} {
		if _, _, err := binlogType(typ, typ, 0, 0, 0, 0); err == nil {
			t.Errorf("%s accepted", typ)
		}
	}
}

func TestBinlogTimeText(t *testing.T) {
	for in, want := range map[string]string{
		"12:00:00":         "12:00:00",
		"12:00:00.000000":  "12:00:00",
		"-00:00:00.500000": "-00:00:00.500000",
		"838:59:59.00":     "838:59:59",
		"-838:59:59":       "-838:59:59",
	} {
		if got := binlogTimeText(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestComparePos(t *testing.T) {
	p := func(f string, pos uint32) schemas.Position { return schemas.Position{File: f, Pos: pos} }
	for _, tc := range []struct {
		a, b schemas.Position
		want int
	}{
		{p("binlog.000001", 4), p("binlog.000001", 4), 0},
		{p("binlog.000001", 400), p("binlog.000002", 4), -1},
		{p("binlog.999999", 400), p("binlog.1000000", 4), -1},
		{p("binlog.000003", 4), p("binlog.000002", 99999), 1},
	} {
		if got := comparePos(tc.a, tc.b); got != tc.want {
			t.Errorf("compare %v %v = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestRawKeyRoundTrip(t *testing.T) {
	raw := [][]byte{[]byte("42"), nil, {}, {0, 0xff}}
	back, err := decodeRawKey(encodeRawKey(raw))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		if (raw[i] == nil) != (back[i] == nil) || string(raw[i]) != string(back[i]) {
			t.Errorf("component %d: %q (nil %v), want %q (nil %v)", i, back[i], back[i] == nil, raw[i], raw[i] == nil)
		}
	}
}

// TestKeyConditions: the keyset condition and the key list condition quote
// every value as a literal of the column's kind (text in its character set and
// collation, bytes as hex), and NULLs compare NULL-safe.
func TestKeyConditions(t *testing.T) {
	st := &snapTable{db: "shop", table: "t", cols: []snapColumn{
		{name: "id", dataType: "int"},
		{name: "name", dataType: "varchar", charset: "latin1", collation: "latin1_swedish_ci"},
		{name: "b", dataType: "varbinary"},
	}, ti: &tableInfo{pk: []int{0, 1, 2}}}
	got, err := st.afterKey([][]byte{[]byte("7"), []byte("a'b"), nil})
	if err != nil {
		t.Fatal(err)
	}
	want := "((`id` > 7) OR (`id` = 7 AND `name` > CONVERT(X'612762' USING latin1) COLLATE latin1_swedish_ci) OR " +
		"(`id` = 7 AND `name` = CONVERT(X'612762' USING latin1) COLLATE latin1_swedish_ci AND `b` IS NOT NULL))"
	if got != want {
		t.Errorf("afterKey:\n got %s\nwant %s", got, want)
	}
	if _, err := st.afterKey([][]byte{[]byte("7 OR 1=1"), nil, nil}); err == nil {
		t.Error("a key value that is not a number was accepted for an int column")
	}
	got, err = st.keysCondition([]string{`shop.t:7,x\,y,0x00ff`, `shop.t:8,\N,0x`})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "`name` = CONVERT(_utf8mb4 X'782c79' USING latin1)") || !strings.Contains(got, "`b` = X'00ff'") ||
		!strings.Contains(got, "`name` IS NULL") {
		t.Errorf("keysCondition: %s", got)
	}
	for _, bad := range []string{"other.t:1,a,0x", "shop.t:1,a", "shop.t:x,a,0x", "shop.t:1,a,zz"} {
		if _, err := st.keysCondition([]string{bad}); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
}

// TestSnapshotCollector: the Prometheus metrics follow the backfill state.
func TestSnapshotCollector(t *testing.T) {
	p := &Producer{cfg: DefaultConfig()}
	p.cfg.Source.Name = "src"
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newSnapshotCollector(p, prometheus.Labels{"source": "src"}))
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("before any backfill: %d metrics, %v", n, err)
	}
	p.snapshots.Store(&schemas.SnapshotState{
		Tables:   []schemas.Backfill{{Table: "shop.users", State: schemas.BackfillRunning, Rows: 300, Total: 1000}},
		Finished: []schemas.Backfill{{Table: "shop.users", State: schemas.BackfillDone, Rows: 50}, {Table: "shop.orders", State: schemas.BackfillDone, Rows: 70, Total: 60}},
	})
	want := `
# HELP kanal_snapshot_remaining_rows Estimated rows the table's queued or running backfill has left to read.
# TYPE kanal_snapshot_remaining_rows gauge
kanal_snapshot_remaining_rows{source="src",table="shop.orders"} 0
kanal_snapshot_remaining_rows{source="src",table="shop.users"} 700
# HELP kanal_snapshot_rows_total Rows emitted as snapshot reads by the table's current or last backfill.
# TYPE kanal_snapshot_rows_total counter
kanal_snapshot_rows_total{source="src",table="shop.orders"} 70
kanal_snapshot_rows_total{source="src",table="shop.users"} 300
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestBackfillProgress(t *testing.T) {
	now := time.UnixMilli(100_000)
	b := schemas.Backfill{State: schemas.BackfillRunning, Rows: 500, Total: 1500, StartedMs: 90_000}
	rate, left := b.Progress(now)
	if rate != 50 || left != 20*time.Second || b.Remaining() != 1000 {
		t.Errorf("rate %v, left %v, remaining %d", rate, left, b.Remaining())
	}
	b.State, b.FinishedMs = schemas.BackfillDone, 95_000
	if rate, left := b.Progress(now); rate != 100 || left != 0 || b.Remaining() != 0 {
		t.Errorf("done: rate %v, left %v, remaining %d", rate, left, b.Remaining())
	}
}

// TestAutoIncrementOption: the cached definition of a table ignores the next
// AUTO_INCREMENT value (every insert moves it), not the column attribute.
func TestAutoIncrementOption(t *testing.T) {
	in := "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB AUTO_INCREMENT=1000001 DEFAULT CHARSET=utf8mb4"
	want := "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL AUTO_INCREMENT,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
	if got := string(autoIncrementOption.ReplaceAll([]byte(in), nil)); got != want {
		t.Errorf("got %q", got)
	}
}
