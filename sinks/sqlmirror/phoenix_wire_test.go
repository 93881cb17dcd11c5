package sqlmirror_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/calcite-avatica-go/v5/message"
	"google.golang.org/protobuf/proto"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// fakePQS is a small Avatica server speaking protobuf over HTTP, like the
// Phoenix Query Server. It declares parameter types from a table definition,
// logs what the driver sends (statements, parameter representations, commits)
// and keeps the offsets table, applying its writes only on commit.
type fakePQS struct {
	t     *testing.T
	types map[string]string // column → Phoenix type, for parameter signatures

	mu      sync.Mutex
	stmts   map[uint32]string
	next    uint32
	log     []string
	offsets map[string]int64 // committed: "grp|topic|part" → next offset
	pending map[string]int64
}

func newFakePQS(t *testing.T, types map[string]string) *fakePQS {
	f := &fakePQS{t: t, types: types, stmts: map[uint32]string{}, offsets: map[string]int64{}, pending: map[string]int64{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.types["GRP"], f.types["TOPIC"], f.types["PART"], f.types["NEXT_OFFSET"] = "VARCHAR", "VARCHAR", "INTEGER", "BIGINT"
	f.types["URL"] = srv.URL
	return f
}

func (f *fakePQS) url() string { return f.types["URL"] }

// events returns the log and clears it.
func (f *fakePQS) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.log
	f.log = nil
	return out
}

const (
	reqPrefix  = "org.apache.calcite.avatica.proto.Requests$"
	respPrefix = "org.apache.calcite.avatica.proto.Responses$"
)

var (
	upsertCols = regexp.MustCompile(`^UPSERT INTO "[^"]+" \(([^)]*)\)`)
	whereCols  = regexp.MustCompile(`"([^"]+)" [=<] \?`)
)

// paramTypes declares a statement's parameters the way Phoenix would, from the
// column types.
func (f *fakePQS) paramTypes(sql string) []*message.AvaticaParameter {
	var cols []string
	if m := upsertCols.FindStringSubmatch(sql); m != nil {
		for _, c := range strings.Split(m[1], ", ") {
			cols = append(cols, strings.Trim(c, `"`))
		}
	} else {
		for _, m := range whereCols.FindAllStringSubmatch(sql, -1) {
			cols = append(cols, m[1])
		}
	}
	out := make([]*message.AvaticaParameter, len(cols))
	for i, c := range cols {
		typ, ok := f.types[c]
		if !ok {
			if c == "_KANAL_VERSION" {
				typ = "BIGINT"
			} else {
				f.t.Errorf("statement %q has a parameter for unknown column %q", sql, c)
			}
		}
		out[i] = message.AvaticaParameter_builder{TypeName: typ, Name: c}.Build()
	}
	return out
}

func rep(v *message.TypedValue) string {
	switch v.GetType() {
	case message.Rep_NULL:
		return "NULL"
	case message.Rep_STRING, message.Rep_BIG_DECIMAL:
		return fmt.Sprintf("%s %q", v.GetType(), v.GetStringValue())
	case message.Rep_DOUBLE:
		return fmt.Sprintf("DOUBLE %v", v.GetDoubleValue())
	case message.Rep_BYTE_STRING:
		return fmt.Sprintf("BYTE_STRING 0x%x", v.GetBytesValue())
	}
	return fmt.Sprintf("%s %d", v.GetType(), v.GetNumberValue())
}

func (f *fakePQS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-google-protobuf" {
		f.t.Errorf("request content type %q, want protobuf", ct)
	}
	var wire message.WireMessage
	if err := proto.Unmarshal(body, &wire); err != nil {
		f.t.Errorf("undecodable wire message: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := f.handle(strings.TrimPrefix(wire.GetName(), reqPrefix), wire.GetWrappedMessage())
	if err != nil {
		f.t.Errorf("%s: %v", wire.GetName(), err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	inner, err := proto.Marshal(resp)
	if err != nil {
		f.t.Errorf("marshal: %v", err)
		return
	}
	name := string(resp.ProtoReflect().Descriptor().Name())
	out, _ := proto.Marshal(message.WireMessage_builder{Name: respPrefix + name, WrappedMessage: inner}.Build())
	w.Header().Set("Content-Type", "application/x-google-protobuf")
	_, _ = w.Write(out)
}

func (f *fakePQS) handle(name string, raw []byte) (proto.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	decode := func(m proto.Message) error { return proto.Unmarshal(raw, m) }
	switch name {
	case "OpenConnectionRequest":
		return &message.OpenConnectionResponse{}, decode(&message.OpenConnectionRequest{})
	case "DatabasePropertyRequest":
		return message.DatabasePropertyResponse_builder{Props: []*message.DatabasePropertyElement{
			message.DatabasePropertyElement_builder{
				Key:   message.DatabaseProperty_builder{Name: "GET_DRIVER_NAME"}.Build(),
				Value: message.TypedValue_builder{Type: message.Rep_STRING, StringValue: "PhoenixEmbeddedDriver"}.Build(),
			}.Build()}}.Build(), nil
	case "ConnectionSyncRequest":
		var req message.ConnectionSyncRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		f.log = append(f.log, fmt.Sprintf("sync autocommit=%v", req.GetConnProps().GetAutoCommit()))
		return message.ConnectionSyncResponse_builder{ConnProps: req.GetConnProps()}.Build(), nil
	case "CreateStatementRequest":
		var req message.CreateStatementRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		f.next++
		return message.CreateStatementResponse_builder{ConnectionId: req.GetConnectionId(), StatementId: f.next}.Build(), nil
	case "PrepareAndExecuteRequest":
		var req message.PrepareAndExecuteRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		f.log = append(f.log, "run "+req.GetSql())
		return message.ExecuteResponse_builder{Results: []*message.ResultSetResponse{
			message.ResultSetResponse_builder{ConnectionId: req.GetConnectionId(), StatementId: req.GetStatementId()}.Build()}}.Build(), nil
	case "PrepareRequest":
		var req message.PrepareRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		f.next++
		f.stmts[f.next] = req.GetSql()
		return message.PrepareResponse_builder{Statement: message.StatementHandle_builder{
			ConnectionId: req.GetConnectionId(), Id: f.next,
			Signature: message.Signature_builder{Sql: req.GetSql(), Parameters: f.paramTypes(req.GetSql())}.Build(),
		}.Build()}.Build(), nil
	case "ExecuteRequest":
		var req message.ExecuteRequest
		if err := decode(&req); err != nil {
			return nil, err
		}
		sql := f.stmts[req.GetStatementHandle().GetId()]
		var reps []string
		for _, v := range req.GetParameterValues() {
			reps = append(reps, rep(v))
		}
		f.log = append(f.log, "exec "+sql+" ["+strings.Join(reps, ", ")+"]")
		return f.execute(req.GetStatementHandle(), sql, req.GetParameterValues())
	case "CommitRequest":
		f.log = append(f.log, "commit")
		for k, v := range f.pending {
			f.offsets[k] = v
		}
		clear(f.pending)
		return &message.CommitResponse{}, nil
	case "RollbackRequest":
		f.log = append(f.log, "rollback")
		clear(f.pending)
		return &message.RollbackResponse{}, nil
	case "CloseStatementRequest":
		return &message.CloseStatementResponse{}, nil
	case "CloseConnectionRequest":
		return &message.CloseConnectionResponse{}, nil
	}
	return nil, fmt.Errorf("unexpected request %s", name)
}

func col(name, typ string, r message.Rep) *message.ColumnMetaData {
	return message.ColumnMetaData_builder{ColumnName: name, Label: name,
		Type: message.AvaticaType_builder{Name: typ, Rep: r}.Build()}.Build()
}

func (f *fakePQS) execute(h *message.StatementHandle, sql string, ps []*message.TypedValue) (proto.Message, error) {
	result := func(cols []*message.ColumnMetaData, rows []*message.Row, count uint64) proto.Message {
		rs := message.ResultSetResponse_builder{ConnectionId: h.GetConnectionId(), StatementId: h.GetId(), UpdateCount: count}
		if cols != nil {
			rs.Signature = message.Signature_builder{Columns: cols, Sql: sql}.Build()
			rs.FirstFrame = message.Frame_builder{Done: true, Rows: rows}.Build()
			rs.UpdateCount = ^uint64(0)
		}
		return message.ExecuteResponse_builder{Results: []*message.ResultSetResponse{rs.Build()}}.Build()
	}
	long := func(v int64) *message.ColumnValue {
		return message.ColumnValue_builder{ScalarValue: message.TypedValue_builder{Type: message.Rep_LONG, NumberValue: v}.Build()}.Build()
	}
	str := func(s string) *message.ColumnValue {
		return message.ColumnValue_builder{ScalarValue: message.TypedValue_builder{Type: message.Rep_STRING, StringValue: s}.Build()}.Build()
	}
	switch {
	case strings.HasPrefix(sql, `SELECT "NEXT_OFFSET"`):
		var rows []*message.Row
		k := fmt.Sprintf("%s|%s|%d", ps[0].GetStringValue(), ps[1].GetStringValue(), ps[2].GetNumberValue())
		if off, ok := f.offsets[k]; ok {
			rows = append(rows, message.Row_builder{Value: []*message.ColumnValue{long(off)}}.Build())
		}
		return result([]*message.ColumnMetaData{col("NEXT_OFFSET", "BIGINT", message.Rep_LONG)}, rows, 0), nil
	case strings.HasPrefix(sql, `SELECT "TOPIC"`):
		var rows []*message.Row
		for k, off := range f.offsets {
			parts := strings.Split(k, "|")
			if parts[0] != ps[0].GetStringValue() {
				continue
			}
			var p int64
			fmt.Sscan(parts[2], &p)
			rows = append(rows, message.Row_builder{Value: []*message.ColumnValue{str(parts[1]), long(p), long(off)}}.Build())
		}
		return result([]*message.ColumnMetaData{col("TOPIC", "VARCHAR", message.Rep_STRING),
			col("PART", "INTEGER", message.Rep_INTEGER), col("NEXT_OFFSET", "BIGINT", message.Rep_LONG)}, rows, 0), nil
	case strings.HasPrefix(sql, `UPSERT INTO "KANAL_OFFSETS"`):
		f.pending[fmt.Sprintf("%s|%s|%d", ps[0].GetStringValue(), ps[1].GetStringValue(), ps[2].GetNumberValue())] = ps[3].GetNumberValue()
	}
	return result(nil, nil, 1), nil
}

var phoenixCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "Name", Type: "varchar"},
	{Name: "amount", Type: "decimal(12,2)"},
	{Name: "ratio", Type: "float"},
	{Name: "at", Type: "datetime(3)"},
	{Name: "day", Type: "date"},
	{Name: "data", Type: "varbinary"},
	{Name: "flags", Type: "bit(10)"},
	{Name: "big", Type: "bigint unsigned"},
	{Name: "note", Type: "text"},
}

func phoenixChange(op schemas.Op, seq uint64, id int64, name string, big uint64) *schemas.Change {
	row := map[string]any{"id": id, "Name": name, "amount": schemas.Decimal("12.50"), "ratio": float32(1.5),
		"at": "2024-03-01 10:00:00.123", "day": "2024-03-01", "data": []byte{0xca, 0xfe}, "flags": uint64(5),
		"big": big, "note": nil}
	c := &schemas.Change{Op: op, Seq: seq, Columns: phoenixCols,
		Source: schemas.Source{Name: "src", ServerID: 1, DB: "wl", Table: "items"}}
	if op == schemas.OpDelete {
		c.Before = row
	} else {
		c.After = row
	}
	return c
}

func phoenixBatch(offset int64, cs ...*schemas.Change) consumer.Batch {
	b := consumer.Batch{Group: "kanal-phx", Topic: "kanal.wl.items", Partition: 0}
	for _, c := range cs {
		r := consumer.Record{Topic: b.Topic, Offset: offset, Table: "wl.items", Seq: c.Seq, Op: c.Op, Change: c, Key: c.Key()}
		b.Records = append(b.Records, r)
		offset++
		if c.Op == schemas.OpDelete {
			b.Records = append(b.Records, consumer.Record{Topic: b.Topic, Offset: offset, Table: "wl.items", Seq: c.Seq,
				Op: schemas.OpDelete, Key: c.Key(), Tombstone: true})
			offset++
		}
	}
	return b
}

func checkEvents(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: the driver sent\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestPhoenixWire runs the Phoenix dialect through the real
// calcite-avatica-go driver against an in-test Avatica endpoint and checks
// what goes over the wire: the statements, every parameter's Avatica type
// (numbers as numbers, strings as strings, decimals as BIG_DECIMAL, times as
// java.sql types), that a batch is one transaction committed once after its
// writes and its offset, that a replayed batch writes nothing and that a value
// Phoenix cannot hold rolls back and is reported as permanent.
func TestPhoenixWire(t *testing.T) {
	f := newFakePQS(t, map[string]string{"ID": "BIGINT", "NAME": "VARCHAR", "AMOUNT": "DECIMAL", "RATIO": "FLOAT",
		"AT": "TIMESTAMP", "DAY": "DATE", "DATA": "VARBINARY", "FLAGS": "INTEGER", "BIG": "UNSIGNED_LONG", "NOTE": "VARCHAR"})
	cfg := sqlmirror.DefaultConfig()
	cfg.Name = "phx"
	cfg.Dialect = sqlmirror.Phoenix
	cfg.DSN = f.url()
	cfg.MaxOpenConns = 1
	h := newMirror(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := phoenixBatch(0,
		phoenixChange(schemas.OpCreate, 10, 1, "O'Brien", 1<<63-1),
		phoenixChange(schemas.OpUpdate, 11, 1, "Ann", 7),
		phoenixChange(schemas.OpCreate, 12, 2, "", 0),
		phoenixChange(schemas.OpDelete, 13, 2, "", 0))
	if err := h.Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 3, 1, 10, 0, 0, 123e6, time.UTC).UnixMilli()
	day := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	upsert := `exec UPSERT INTO "ITEMS" ("ID", "NAME", "AMOUNT", "RATIO", "AT", "DAY", "DATA", "FLAGS", "BIG", "NOTE", "_KANAL_VERSION") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	vals := func(id int64, name string, big uint64, seq int) string {
		return fmt.Sprintf(` [LONG %d, STRING %q, BIG_DECIMAL "12.50", DOUBLE 1.5, JAVA_SQL_TIMESTAMP %d, JAVA_SQL_DATE %d, BYTE_STRING 0xcafe, LONG 5, LONG %d, NULL, LONG %d]`,
			id, name, at, day, big, seq)
	}
	selectOffset := `exec SELECT "NEXT_OFFSET" FROM "KANAL_OFFSETS" WHERE "GRP" = ? AND "TOPIC" = ? AND "PART" = ? [STRING "kanal-phx", STRING "kanal.wl.items", LONG 0]`
	checkEvents(t, "first batch", f.events(), []string{
		`run CREATE TABLE IF NOT EXISTS "KANAL_OFFSETS" ("GRP" VARCHAR NOT NULL, "TOPIC" VARCHAR NOT NULL, "PART" INTEGER NOT NULL, "NEXT_OFFSET" BIGINT, CONSTRAINT "PK" PRIMARY KEY ("GRP", "TOPIC", "PART"))`,
		"sync autocommit=false",
		selectOffset,
		upsert + vals(1, "O'Brien", 1<<63-1, 10),
		upsert + vals(1, "Ann", 7, 11),
		upsert + vals(2, "", 0, 12),
		`exec DELETE FROM "ITEMS" WHERE "ID" = ? AND ("_KANAL_VERSION" IS NULL OR "_KANAL_VERSION" < ?) [LONG 2, LONG 13]`,
		`exec DELETE FROM "ITEMS" WHERE "ID" = ? AND ("_KANAL_VERSION" IS NULL OR "_KANAL_VERSION" < ?) [LONG 2, LONG 13]`,
		`exec UPSERT INTO "KANAL_OFFSETS" ("GRP", "TOPIC", "PART", "NEXT_OFFSET") VALUES (?, ?, ?, ?) [STRING "kanal-phx", STRING "kanal.wl.items", LONG 0, LONG 5]`,
		"commit",
		"sync autocommit=true",
	})

	// The same batch again (a retry after a lost commit acknowledgement, a
	// duplicate delivery): the stored offset makes it a no-op.
	if err := h.Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "replayed batch", f.events(), []string{"sync autocommit=false", selectOffset, "rollback", "sync autocommit=true"})

	// A value Phoenix cannot hold: nothing is written, the error is permanent
	// and names table, column and value.
	err := h.Handle(ctx, phoenixBatch(5, phoenixChange(schemas.OpCreate, 14, 3, "x", 1<<63)))
	var ve *sqlmirror.ValueError
	if !consumer.IsPermanent(err) || !errors.As(err, &ve) || ve.Table != "wl.items" || ve.Column != "big" || ve.Value != "9223372036854775808" {
		t.Fatalf("a too big unsigned BIGINT: %v, want a permanent ValueError naming wl.items, big and the value", err)
	}
	checkEvents(t, "refused value", f.events(), []string{"sync autocommit=false", selectOffset, "rollback", "sync autocommit=true"})

	got, err := h.LoadOffsets(ctx, "kanal-phx", map[string][]int32{"kanal.wl.items": {0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got["kanal.wl.items"]) != 1 || got["kanal.wl.items"][0] != 5 {
		t.Errorf("LoadOffsets: %v, want partition 0 at 5", got)
	}
}
