package producer

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/internal/testenv"
)

// tableMapFields is everything of a table map the producer reads.
type tableMapFields struct {
	Schema, Table                               string
	ColumnCount                                 uint64
	ColumnType, NullBitmap                      []byte
	ColumnMeta                                  []uint16
	Signedness, Visibility                      []byte
	DefaultCharset, ColumnCharset, GeometryType []uint64
	EnumSetDefaultCharset, EnumSetColumnCharset []uint64
	ColumnName                                  [][]byte
	SetStr, EnumStr                             [][][]byte
	PK, PKPrefix                                []uint64
}

func fieldsOf(tm *replication.TableMapEvent) tableMapFields {
	return tableMapFields{
		Schema: string(tm.Schema), Table: string(tm.Table), ColumnCount: tm.ColumnCount,
		ColumnType: tm.ColumnType, NullBitmap: tm.NullBitmap, ColumnMeta: tm.ColumnMeta,
		Signedness: tm.SignednessBitmap, Visibility: tm.VisibilityBitmap,
		DefaultCharset: tm.DefaultCharset, ColumnCharset: tm.ColumnCharset, GeometryType: tm.GeometryType,
		EnumSetDefaultCharset: tm.EnumSetDefaultCharset, EnumSetColumnCharset: tm.EnumSetColumnCharset,
		ColumnName: tm.ColumnName, SetStr: tm.SetStrValue, EnumStr: tm.EnumStrValue,
		PK: tm.PrimaryKey, PKPrefix: tm.PrimaryKeyPrefix,
	}
}

type collectTableMaps struct {
	meta *tableMetaCache
	out  []tableMapFields
	done chan struct{}
	end  mysql.Position
	file string
}

func (c *collectTableMaps) HandleEvent(ev *replication.BinlogEvent) error {
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		c.file = string(e.NextLogName)
	case *replication.TableMapEvent:
		if c.meta != nil {
			if err := c.meta.fill(e); err != nil {
				return err
			}
		}
		c.out = append(c.out, fieldsOf(e))
	}
	if c.done != nil && c.file == c.end.Name && ev.Header.LogPos >= c.end.Pos {
		close(c.done)
		c.done = nil
	}
	return nil
}

// TestTableMetaMatchesGoMySQL reads one binlog twice, with go-mysql decoding the
// optional metadata of each table map and with tableMetaCache, over tables with
// every kind of metadata (names, ENUM/SET labels and their charsets, column
// charsets, signedness, simple, composite and prefix keys, GEOMETRY, invisible
// columns, no key) and their changes by ALTER; every table map must come out the
// same, and the cache must have been hit.
func TestTableMetaMatchesGoMySQL(t *testing.T) {
	m := testenv.MariaDB(t)
	m.Exec(t, "CREATE DATABASE tm")
	m.Exec(t, `CREATE TABLE tm.a (id INT UNSIGNED PRIMARY KEY, n TINYINT, name VARCHAR(20) CHARACTER SET latin1,
		label VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, raw VARBINARY(8),
		e ENUM('x','y','zé') CHARACTER SET utf8mb4, s SET('p','q') CHARACTER SET latin1, hidden INT INVISIBLE DEFAULT 7) CHARACTER SET utf8mb4`)
	m.Exec(t, `CREATE TABLE tm.b (tenant INT, sku VARCHAR(30), note TEXT, PRIMARY KEY (tenant, sku))`)
	m.Exec(t, `CREATE TABLE tm.c (body TEXT NOT NULL, v INT, PRIMARY KEY (body(10)))`)
	m.Exec(t, `CREATE TABLE tm.d (id INT PRIMARY KEY, g GEOMETRY, p POINT)`)
	m.Exec(t, `CREATE TABLE tm.e (x INT, y VARCHAR(5))`)
	for i := range 3 {
		m.Exec(t, fmt.Sprintf("INSERT INTO tm.a (id, n, name, label, raw, e, s) VALUES (%d, -1, 'n', 'l', X'00', 'zé', 'p,q')", i+1))
		m.Exec(t, fmt.Sprintf("INSERT INTO tm.b VALUES (%d, 'k,%d', 'note')", i, i))
		m.Exec(t, fmt.Sprintf("INSERT INTO tm.c VALUES ('body%d number', 1)", i))
		m.Exec(t, fmt.Sprintf("INSERT INTO tm.d VALUES (%d, ST_GeomFromText('POINT(1 1)'), ST_GeomFromText('POINT(2 2)'))", i))
		m.Exec(t, fmt.Sprintf("INSERT INTO tm.e VALUES (%d, 'y')", i))
	}
	m.Exec(t, "ALTER TABLE tm.a ADD COLUMN extra ENUM('m','n') DEFAULT 'm', MODIFY e ENUM('x','y','zé','w') CHARACTER SET utf8mb4")
	m.Exec(t, "ALTER TABLE tm.b DROP PRIMARY KEY, ADD PRIMARY KEY (sku)")
	m.Exec(t, "INSERT INTO tm.a (id, e) VALUES (10, 'w')")
	m.Exec(t, "UPDATE tm.b SET note = 'changed'")

	var end mysql.Position
	if err := m.DB().QueryRow("SHOW MASTER STATUS").Scan(&end.Name, &end.Pos, new(any), new(any)); err != nil {
		t.Fatal(err)
	}
	var first string
	if err := m.DB().QueryRow("SHOW BINARY LOGS").Scan(&first, new(any)); err != nil {
		t.Fatal(err)
	}
	read := func(serverID uint32, meta *tableMetaCache) []tableMapFields {
		c := &collectTableMaps{meta: meta, done: make(chan struct{}), end: end, file: first}
		done := c.done
		st := startSync(t, m, serverID, first, func(cfg *replication.BinlogSyncerConfig) {
			cfg.SynchronousEventHandler = c
			if meta != nil {
				cfg.TableMapOptionalMetaDecodeFunc = meta.decode
			}
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		errc := make(chan error, 1)
		go func() { _, err := st.GetEvent(ctx); errc <- err }()
		select {
		case <-done:
		case err := <-errc:
			t.Fatalf("binlog stream ended early: %v", err)
		}
		return c.out
	}
	want := read(7201, nil)
	meta := newTableMetaCache()
	got := read(7202, meta)
	if len(got) != len(want) || len(want) < 17 {
		t.Fatalf("%d table maps with the cache, %d with go-mysql (want ≥ 17: 5 tables × 3 inserts, 2 after the ALTERs)", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("table map %d (%s.%s):\n got %+v\nwant %+v", i, want[i].Schema, want[i].Table, got[i], want[i])
		}
	}
	// Each table's layout decoded once per shape (and the server's own tables'):
	// far fewer entries than table maps.
	if len(meta.entries) >= len(want)/2 {
		t.Errorf("%d cache entries for %d table maps: the cache is not reused", len(meta.entries), len(want))
	}
	seen := map[string]bool{}
	for _, f := range want {
		if f.Schema == "tm" {
			seen[f.Table] = true
		}
	}
	if len(seen) != 5 {
		t.Errorf("table maps seen for %v, want tm.a … tm.e", seen)
	}
}

// A metadata block that ends inside a field is an error, not a crash.
func TestTableMetaMalformed(t *testing.T) {
	c := newTableMetaCache()
	for _, data := range [][]byte{
		{replication.TABLE_MAP_OPT_META_COLUMN_NAME, 5, 3, 'a'},
		{replication.TABLE_MAP_OPT_META_ENUM_STR_VALUE, 3, 1, 9, 'x'},
		{replication.TABLE_MAP_OPT_META_DEFAULT_CHARSET, 2, 1, 2},
	} {
		if err := c.decode(data); err == nil {
			t.Errorf("% x: no error", data)
		}
	}
	c = newTableMetaCache()
	if err := c.fill(&replication.TableMapEvent{Schema: []byte("s"), Table: []byte("t")}); !errors.Is(err, errTableMetaOrder) {
		t.Errorf("fill without decode: %v", err)
	}
}

// TestTableMetaNoAllocation: a table map whose metadata was seen before costs
// no allocation in decode and fill (every transaction repeats its table maps),
// and the table maps of a compressed payload, decoded all before any is filled,
// are filled in order.
func TestTableMetaNoAllocation(t *testing.T) {
	c := newTableMetaCache()
	meta := func(name string) []byte {
		return append([]byte{replication.TABLE_MAP_OPT_META_COLUMN_NAME, byte(1 + len(name)), byte(len(name))}, name...)
	}
	a, b := meta("a"), meta("bb")
	tm := &replication.TableMapEvent{Schema: []byte("d"), Table: []byte("t"), ColumnCount: 1}
	for _, m := range [][]byte{a, b} {
		if err := c.decode(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"a", "bb"} {
		if err := c.fill(tm); err != nil || string(tm.ColumnName[0]) != want {
			t.Fatalf("fill: %v %q, want %q", err, tm.ColumnName, want)
		}
	}
	if err := c.fill(tm); !errors.Is(err, errTableMetaOrder) {
		t.Fatalf("fill without decode: %v", err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if c.decode(a) != nil || c.fill(tm) != nil {
			t.Fatal("decode/fill failed")
		}
	}); n != 0 {
		t.Errorf("%.1f allocations per table map", n)
	}
}
