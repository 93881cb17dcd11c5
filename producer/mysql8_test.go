package producer_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/fakemysql"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

// MySQL 8 cannot run here: these tests read binlog events laid out as MySQL 8.0
// writes them from fakemysql, a server speaking its protocol (docs/formats.md
// lists what is proven only this way).

var sid = [16]byte{0x3e, 0x11, 0xfa, 0x47, 0x71, 0xca, 0x11, 0xe1, 0x9e, 0x33, 0xc8, 0x0a, 0xa9, 0x42, 0x95, 0x63}

const sidText = "3e11fa47-71ca-11e1-9e33-c80aa9429563"

// mysql8Orders is shop.orders: id INT, a latin1 VARCHAR(40), a utf8mb4
// VARCHAR(40), a gbk VARCHAR(40) and a latin1 ENUM (MySQL 8's collation ids:
// latin1_swedish_ci 8, utf8mb4_0900_ai_ci 255, gbk_chinese_ci 28).
var mysql8Orders = fakemysql.Table{ID: 101, Schema: "shop", Table: "orders", PK: []uint64{0}, Columns: []fakemysql.Column{
	{Name: "id", Type: mysql.MYSQL_TYPE_LONG},
	{Name: "name", Type: mysql.MYSQL_TYPE_VARCHAR, Meta: []byte{40, 0}, Collation: 8},
	{Name: "note", Type: mysql.MYSQL_TYPE_VARCHAR, Meta: []byte{160, 0}, Collation: 255},
	{Name: "city", Type: mysql.MYSQL_TYPE_VARCHAR, Meta: []byte{80, 0}, Collation: 28},
	{Name: "size", Type: mysql.MYSQL_TYPE_STRING, Meta: []byte{mysql.MYSQL_TYPE_ENUM, 1}, Collation: 8, Enum: []string{"caf\xe9", "plain"}},
}}

// mysql8Docs is shop.docs: id INT, j JSON.
var mysql8Docs = fakemysql.Table{ID: 102, Schema: "shop", Table: "docs", PK: []uint64{0}, Columns: []fakemysql.Column{
	{Name: "id", Type: mysql.MYSQL_TYPE_LONG},
	{Name: "j", Type: mysql.MYSQL_TYPE_JSON, Meta: []byte{4}},
}}

func order(id int32, name, note, city string, size byte) []byte {
	return fakemysql.Image(fakemysql.Long(id), fakemysql.VarString([]byte(name), 40),
		fakemysql.VarString([]byte(note), 160), fakemysql.VarString([]byte(city), 80), []byte{size})
}

func mysql8Config(s *fakemysql.Server, k *testenv.KafkaCluster, name string) producer.Config {
	cfg := producer.DefaultConfig()
	cfg.Source.Name = name
	cfg.Source.Addr = s.Addr
	cfg.Source.User, cfg.Source.Password = s.User, s.Password
	cfg.Source.Start = "earliest"
	cfg.Source.HeartbeatInterval = 300 * time.Millisecond
	cfg.Kafka.Brokers = k.Brokers
	cfg.Kafka.Partitions = 3
	cfg.Kafka.CleanupPolicy = "delete"
	cfg.Kafka.TopicPrefix = name
	return cfg
}

// TestMySQL8CompressedTransactions: with binlog_transaction_compression=ON a
// MySQL 8 transaction is one TRANSACTION_PAYLOAD_EVENT (zstd); its changes come
// out as those of plain transactions do, exactly once across a restart inside
// a payload, with their GTIDs (gtid_mode ON) or none (OFF, anonymous GTID
// events), text decoded by charset (MySQL 8 collation ids) and invalid bytes
// marked.
func TestMySQL8CompressedTransactions(t *testing.T) {
	s := fakemysql.Start(t)
	s.SetVar("binlog_transaction_compression", "ON", false)
	s.SetVar("gtid_mode", "ON", false)
	k := testenv.Kafka(t)
	b := s.Binlog()
	tm, tm2 := b.TableMap(mysql8Orders), b.TableMap(mysql8Docs)
	payload := func(events ...[]byte) []byte {
		p, err := b.Payload(events...)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// 1: a plain transaction.
	s.Append(b.GTID(sid, 1), b.Query("shop", "BEGIN"), tm,
		b.Rows(replication.WRITE_ROWS_EVENTv2, 101, 5, order(1, "caf\xe9 \x80", "héllo 🎉", "\xc4\xe3\xba\xc3", 1)), b.XID(11))
	// 2: compressed: two inserts and an update (each statement repeats its
	// table maps).
	s.Append(b.GTID(sid, 2), payload(b.Query("shop", "BEGIN"), tm,
		b.Rows(replication.WRITE_ROWS_EVENTv2, 101, 5, order(2, "\xc4rger", "ok", "x", 2), order(3, "three", "3", "y", 1)),
		tm, b.Rows(replication.UPDATE_ROWS_EVENTv2, 101, 5, order(1, "caf\xe9 \x80", "héllo 🎉", "\xc4\xe3\xba\xc3", 1),
			order(1, "na\xefve", "héllo 🎉", "\xc4\xe3\xba\xc3", 2)),
		b.XID(12)))
	// 3: compressed, two tables.
	s.Append(b.GTID(sid, 3), payload(b.Query("shop", "BEGIN"), tm2,
		b.Rows(replication.WRITE_ROWS_EVENTv2, 102, 2, fakemysql.Image(fakemysql.Long(7), fakemysql.JSON(fakemysql.JSONObjectInt16("a", 1)))),
		tm, b.Rows(replication.DELETE_ROWS_EVENTv2, 101, 5, order(3, "three", "3", "y", 1)),
		b.XID(13)))
	// 4: gtid_mode OFF (an anonymous GTID event), compressed, with bytes
	// invalid in utf8mb4.
	s.Append(b.GTID([16]byte{}, 0), payload(b.Query("shop", "BEGIN"), tm,
		b.Rows(replication.WRITE_ROWS_EVENTv2, 101, 5, order(4, "four", "a\xffb", "z", 2)), b.XID(14)))

	cfg := mysql8Config(s, k, "my8")
	cfg.Kafka.FlushRecords = 1 // a commit after each change: inside the payloads too
	// Stop after the third change (inside the first payload), then restart.
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	producer.SetEmitHook(p, func(n uint64) {
		if n == 3 {
			cancel()
		}
	})
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	r := cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, s.DB(t))

	recs := cdctest.ReadAll(t, k.Brokers, `^my8\.shop\.`, time.Minute)
	if n := cdctest.CheckExactlyOnce(t, recs); n != 7 {
		t.Fatalf("%d changes, want 7", n)
	}
	type want struct {
		key  string
		op   schemas.Op
		gtid string
		row  map[string]any
	}
	o := func(id int64, name, note, city, size string) map[string]any {
		return map[string]any{"id": id, "name": name, "note": note, "city": city, "size": size}
	}
	wants := []want{
		{"shop.orders:1", schemas.OpCreate, sidText + ":1", o(1, "café €", "héllo 🎉", "你好", "café")},
		{"shop.orders:2", schemas.OpCreate, sidText + ":2", o(2, "Ärger", "ok", "x", "plain")},
		{"shop.orders:3", schemas.OpCreate, sidText + ":2", o(3, "three", "3", "y", "café")},
		{"shop.orders:1", schemas.OpUpdate, sidText + ":2", o(1, "naïve", "héllo 🎉", "你好", "plain")},
		{"shop.docs:7", schemas.OpCreate, sidText + ":3", map[string]any{"id": int64(7), "j": `{"a":1}`}},
		{"shop.orders:3", schemas.OpDelete, sidText + ":3", o(3, "three", "3", "y", "café")},
		{"shop.orders:4", schemas.OpCreate, "", o(4, "four", "a\uFFFDb", "z", "plain")},
	}
	bySeq := map[uint64]cdctest.Record{}
	for _, rec := range recs {
		if rec.Change != nil {
			bySeq[rec.Change.Seq] = rec
		}
	}
	for i, w := range wants {
		rec := bySeq[uint64(i+1)]
		c := rec.Change
		row := c.After
		if w.op == schemas.OpDelete {
			row = c.Before
		}
		if rec.Key != w.key || c.Op != w.op || c.Source.GTID != w.gtid || !reflect.DeepEqual(row, w.row) {
			t.Errorf("change %d: %s %s gtid %q %v\nwant %s %s gtid %q %v", i+1, rec.Key, c.Op, c.Source.GTID, row, w.key, w.op, w.gtid, w.row)
		}
		if got, bad := rec.Headers[schemas.HeaderInvalidText], w.key == "shop.orders:4"; bad != (got != "") || bad && got != "note" {
			t.Errorf("change %d: %s header %q", i+1, schemas.HeaderInvalidText, got)
		}
	}
	if n := r.P.Stats().InvalidText.Load(); n != 1 {
		t.Errorf("Stats.InvalidText = %d, want 1", n)
	}
	if v := counterValue(t, r.P, "kanal_producer_invalid_text_total"); v != 1 {
		t.Errorf("kanal_producer_invalid_text_total = %v, want 1", v)
	}
}

// TestMySQL8PartialJSON: binlog_row_value_options=PARTIAL_JSON is refused at
// start; should a partial JSON update reach kanal anyway (the option set after
// the start), the producer stops at it naming the table and column; a partial
// update event without partial values is an ordinary update.
func TestMySQL8PartialJSON(t *testing.T) {
	s := fakemysql.Start(t)
	k := testenv.Kafka(t)
	s.SetVar("binlog_row_value_options", "PARTIAL_JSON", false)
	msg := runUntilError(t, mysql8Config(s, k, "pj0"))
	for _, want := range []string{"binlog_row_value_options=PARTIAL_JSON", "SET GLOBAL binlog_row_value_options = ''"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	s.SetVar("binlog_row_value_options", "", false)

	b := s.Binlog()
	doc := func(id int32, v int16) []byte {
		return fakemysql.Image(fakemysql.Long(id), fakemysql.JSON(fakemysql.JSONObjectInt16("a", v)))
	}
	full := append(append([]byte(nil), doc(7, 1)...), append([]byte{0}, doc(7, 2)...)...) // value options 0: whole values
	s.Append(b.GTID(sid, 1), b.Query("shop", "BEGIN"), b.TableMap(mysql8Docs),
		b.Rows(replication.WRITE_ROWS_EVENTv2, 102, 2, doc(7, 1)), b.TableMap(mysql8Docs),
		b.Rows(replication.PARTIAL_UPDATE_ROWS_EVENT, 102, 2, full), b.XID(1))
	r := cdctest.StartProducer(t, mysql8Config(s, k, "pj1"))
	r.CaughtUp(t, s.DB(t))
	recs := cdctest.ReadAll(t, k.Brokers, `^pj1\.shop\.docs$`, time.Minute)
	if len(recs) != 2 || recs[1].Change.Op != schemas.OpUpdate || recs[1].Change.After["j"] != `{"a":2}` {
		t.Fatalf("records: %+v", recs)
	}

	s.Append(b.GTID(sid, 2), b.Query("shop", "BEGIN"), b.TableMap(mysql8Docs),
		b.Rows(replication.PARTIAL_UPDATE_ROWS_EVENT, 102, 2, doc(7, 2), fakemysql.PartialJSONReplace(1, "$.a", 3, fakemysql.Long(7), nil)),
		b.XID(2))
	err := r.Wait(t, time.Minute)
	var rowErr *producer.RowError
	if !errors.Is(err, producer.ErrServerConfig) || !errors.As(err, &rowErr) || rowErr.Table != "shop.docs" ||
		!strings.Contains(err.Error(), "column j") || !strings.Contains(err.Error(), "PARTIAL_JSON") {
		t.Fatalf("producer stopped with %v, want a partial JSON error naming shop.docs column j", err)
	}
}

// TestMySQL8UnknownCollation: a collation id kanal's list lacks (a server newer
// than kanal) is looked up on the server and decoded by its character set; an
// id the server does not know either stops the producer naming the column.
func TestMySQL8UnknownCollation(t *testing.T) {
	s := fakemysql.Start(t)
	k := testenv.Kafka(t)
	s.SetCollation(4000, "latin1")
	b := s.Binlog()
	tbl := fakemysql.Table{ID: 103, Schema: "shop", Table: "future", PK: []uint64{0}, Columns: []fakemysql.Column{
		{Name: "id", Type: mysql.MYSQL_TYPE_LONG},
		{Name: "name", Type: mysql.MYSQL_TYPE_VARCHAR, Meta: []byte{40, 0}, Collation: 4000},
	}}
	s.Append(b.GTID(sid, 1), b.Query("shop", "BEGIN"), b.TableMap(tbl),
		b.Rows(replication.WRITE_ROWS_EVENTv2, 103, 2, fakemysql.Image(fakemysql.Long(1), fakemysql.VarString([]byte("caf\xe9"), 40))), b.XID(1))
	r := cdctest.StartProducer(t, mysql8Config(s, k, "uc1"))
	r.CaughtUp(t, s.DB(t))
	recs := cdctest.ReadAll(t, k.Brokers, `^uc1\.shop\.future$`, time.Minute)
	if len(recs) != 1 || recs[0].Change.After["name"] != "café" {
		t.Fatalf("records: %+v", recs)
	}

	tbl.Columns[1].Collation = 4001
	s.Append(b.GTID(sid, 2), b.Query("shop", "BEGIN"), b.TableMap(tbl),
		b.Rows(replication.WRITE_ROWS_EVENTv2, 103, 2, fakemysql.Image(fakemysql.Long(2), fakemysql.VarString([]byte("x"), 40))), b.XID(2))
	err := r.Wait(t, time.Minute)
	if !errors.Is(err, producer.ErrCharset) || !strings.Contains(err.Error(), "shop.future column name") || !strings.Contains(err.Error(), "4001") {
		t.Fatalf("producer stopped with %v, want ErrCharset naming the column and the collation id", err)
	}
}

// TestMySQL8BackfillNeedsSignalTable: a MySQL server has no binlog position of
// a consistent snapshot, so without source.signal_table a new deployment with
// source.start: snapshot does not start, and `kanal snapshot` is refused, both
// naming the setting. (The table mode itself is tested on MariaDB.)
func TestMySQL8BackfillNeedsSignalTable(t *testing.T) {
	s := fakemysql.Start(t)
	k := testenv.Kafka(t)
	cfg := mysql8Config(s, k, "nosig")
	cfg.Source.Start = "snapshot"
	p, err := producer.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = p.Run(ctx)
	if !errors.Is(err, producer.ErrServerConfig) || !strings.Contains(err.Error(), "source.start is snapshot") || !strings.Contains(err.Error(), "source.signal_table") {
		t.Fatalf("producer: %v, want a configuration error naming source.signal_table", err)
	}
	_, err = producer.CheckSnapshotRequest(ctx, &cfg, nil, []string{"shop.orders"}, "")
	if !errors.Is(err, producer.ErrSnapshotRequest) || !strings.Contains(err.Error(), "source.signal_table") {
		t.Fatalf("kanal snapshot on MySQL without signal_table: %v", err)
	}
}
