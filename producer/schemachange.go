package producer

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// maxSchemaChangeSQL bounds the statement text in a schema-change record.
const maxSchemaChangeSQL = 64 << 10

// rememberTable keeps the last table version seen of each table: the columns a
// TRUNCATE or RENAME leaves unchanged, and the schema of a truncate's records.
func (s *session) rememberTable(tv *schemas.TableVersion) {
	if s.known == nil || len(s.known) >= maxCachedTables {
		s.known = map[string]*schemas.TableVersion{}
	}
	s.known[tv.DB+"."+tv.Table] = tv
}

// statement handles a statement that is not a transaction boundary: DDL, which
// the server commits on its own, or anything else written as text. Only table
// DDL of captured tables is logged (redacted) and published; the text of other
// statements never leaves this function: account statements carry passwords.
func (s *session) statement(ctx context.Context, ev *replication.BinlogEvent, e *replication.QueryEvent, idle func() bool) error {
	h := ev.Header
	pos := s.file + ":" + strconv.FormatUint(uint64(h.LogPos), 10)
	st := parseStatement(string(e.Query), string(e.Schema))
	// Table maps after a statement may describe new shapes: drop the cached ones.
	clear(s.tables)
	s.beginTxn()
	var captured []tableRef
	for _, t := range st.tables {
		if s.filter.match(t.db, t.table) || t.newTable != "" && s.filter.match(t.newDB, t.newTable) {
			captured = append(captured, t)
		}
	}
	switch {
	case st.sensitive:
		s.log.Debug("account statement (text not shown)", "statement", st.verb, "pos", pos)
	case len(captured) == 0:
		s.log.Debug("statement of no captured table", "statement", st.verb, "pos", pos)
	default:
		sql := redactSQL(string(e.Query))
		s.log.Info("ddl", "statement", st.verb, "schema", string(e.Schema), "query", truncate(sql, 200), "pos", pos)
		if len(sql) > maxSchemaChangeSQL {
			sql = sql[:maxSchemaChangeSQL]
		}
		s.eventTime = time.Now()
		for _, t := range captured {
			if err := s.schemaChange(ctx, ev, st.kind, t, sql); err != nil {
				return err
			}
		}
	}
	return s.endTxn(ctx, h.LogPos, idle)
}

// schemaChange writes the schema-change record of one table, and for a
// truncate the truncate records.
func (s *session) schemaChange(ctx context.Context, ev *replication.BinlogEvent, kind string, t tableRef, sql string) error {
	name := t.db + "." + t.table
	known := s.known[name]
	sc := &schemas.SchemaChange{
		Source: s.cfg.Source.Name, Kind: kind, DB: t.db, Table: t.table, NewDB: t.newDB, NewTable: t.newTable,
		SQL: sql, File: s.file, Pos: ev.Header.LogPos, GTID: s.txnGTID, TsMs: int64(ev.Header.Timestamp) * 1000, Seq: s.seq,
	}
	switch kind {
	case schemas.SchemaTruncate:
		if known != nil {
			sc.Columns = known.Columns
		}
		s.seq++
		sc.Seq = s.seq
		if err := s.truncate(ctx, ev, t, known); err != nil {
			return err
		}
	case schemas.SchemaRename:
		if known != nil {
			sc.Columns = known.Columns
			delete(s.known, name)
			moved := *known
			moved.DB, moved.Table = t.newDB, t.newTable
			moved.Topic = schemas.TopicName(s.cfg.Kafka.TopicPrefix, t.newDB, t.newTable)
			s.rememberTable(&moved)
		}
	case schemas.SchemaDrop:
		sc.Columns = []schemas.Column{}
		delete(s.known, name)
	case schemas.SchemaAlter, schemas.SchemaCreate:
		// The columns change: unknown until the table's next table map.
		delete(s.known, name)
	}
	return s.w.produce(ctx, &kgo.Record{
		Topic: schemas.SchemaChangesTopic(s.cfg.Kafka.TopicPrefix), Key: []byte(sc.Key()), Value: sc.Marshal(), Timestamp: s.eventTime,
	})
}

// truncate writes one truncate record (op "t", no row images, key "<db>.<table>")
// to every partition of the table's topic, so that every partition's consumer
// meets it in order with the rows it holds.
func (s *session) truncate(ctx context.Context, ev *replication.BinlogEvent, t tableRef, known *schemas.TableVersion) error {
	if !s.filter.match(t.db, t.table) {
		return nil
	}
	topic := schemas.TopicName(s.cfg.Kafka.TopicPrefix, t.db, t.table)
	tv := known
	if tv == nil {
		// No row of the table seen since this session started: a schema without
		// columns is enough for a change without row images.
		tv = &schemas.TableVersion{DB: t.db, Table: t.table, Topic: topic, Columns: []schemas.Column{}}
	}
	enc, err := s.enc.Table(tv)
	if err != nil {
		return fmt.Errorf("encoder for %s.%s: %w", t.db, t.table, err)
	}
	if prep, ok := enc.(schemas.TablePreparer); ok {
		if err := s.prepare(ctx, prep); err != nil {
			return fmt.Errorf("%s.%s: %w", t.db, t.table, err)
		}
	}
	if err := s.w.ensureTableTopic(ctx, topic); err != nil {
		return err
	}
	n, err := s.w.partitions(ctx, topic)
	if err != nil {
		return err
	}
	s.event++
	src := schemas.Source{Name: s.cfg.Source.Name, ServerID: ev.Header.ServerID, File: s.file, Pos: ev.Header.LogPos,
		GTID: s.txnGTID, TsMs: int64(ev.Header.Timestamp) * 1000, DB: t.db, Table: t.table}
	value, err := enc.AppendValue(nil, &schemas.RowChange{Op: schemas.OpTruncate, Seq: s.seq, Source: &src, Event: s.event})
	if err != nil {
		return &RowError{Table: t.db + "." + t.table, Pos: s.posString(ev), Err: err}
	}
	posHdr := []byte(s.posString(ev))
	seqHdr := strconv.AppendUint(nil, s.seq, 10)
	for p := int32(0); p < n; p++ {
		rec := &kgo.Record{
			Topic: topic, Partition: p, Context: explicitPartition, Key: []byte(schemas.TruncateKey(t.db, t.table)), Value: value,
			Timestamp: s.eventTime,
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderOp, Value: []byte(schemas.OpTruncate)},
				{Key: schemas.HeaderPos, Value: posHdr}, {Key: schemas.HeaderSeq, Value: seqHdr},
				{Key: schemas.HeaderFormat, Value: s.formatHdr}},
		}
		if err := s.w.produce(ctx, rec); err != nil {
			return err
		}
	}
	s.log.Info("truncate written to every partition", "table", t.db+"."+t.table, "partitions", n, "seq", s.seq, "pos", s.posString(ev))
	return nil
}
