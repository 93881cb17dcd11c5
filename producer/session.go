package producer

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/charset"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/secret"
)

// session is the state of one connection: from a loaded position to an error.
type session struct {
	p      *Producer
	cfg    *Config
	log    *slog.Logger
	w      *writer
	info   *serverInfo
	filter filter
	text   *sourceText

	tables map[uint64]*tableInfo
	// known is the last version seen of each captured table, by "db.table".
	known map[string]*schemas.TableVersion
	snap  *snapshotter

	streamState
	txnState
	recordState
}

// streamState is where the session stands in the binlog and in the change sequence.
type streamState struct {
	file       string           // current binlog file
	boundary   schemas.Position // end of the last complete binlog transaction
	lastEnd    uint32           // end position (in file) of the last event handled
	gtidSet    mysql.GTIDSet
	seq        uint64
	lastTs     int64
	lastCommit time.Time
	// heldSince: when the last complete binlog transaction ended without a
	// commit, so that the open Kafka transaction holds it; zero after a commit.
	heldSince  time.Time
	progressed bool
	// committedMidTxn: the last committed position points inside a binlog
	// transaction (RowsDone > 0).
	committedMidTxn bool
}

// txnState is the binlog transaction being read.
type txnState struct {
	inTxn    bool
	txnStart schemas.Position // where the current binlog transaction starts
	txnGTID  string
	// txnMariaGTID is the current transaction's MariaDB GTID when txnMariaOK: the
	// set is updated from it directly rather than by re-parsing txnGTID.
	txnMariaGTID mysql.MariadbGTID
	txnMariaOK   bool
	txnRows      int // changes of the current binlog transaction, written or skipped
	skipRows     int // changes of the first transaction already written before a restart
}

// recordState turns changes into Kafka records. Allocation per record is what
// dominated the producer's profile (docs/bench.md): converted row images are reused
// from row to row, record bytes are carved from an arena, and records and headers
// are allocated in chunks.
type recordState struct {
	// enc encodes record values in kafka.format; change is the reused argument of
	// its table encoders, event numbers the rows events for them.
	enc       schemas.Encoder
	change    schemas.RowChange
	src       schemas.Source // of the rows event being handled
	event     uint64
	formatHdr []byte

	keyBuf []byte
	fpBuf  []byte // scratch for table map fingerprints
	// invalidText: the rows event being handled has text decoded from bytes
	// invalid in their character set, which emit looks for (invalidHeader).
	invalidText bool

	rowA, rowB []schemas.Value
	// scratchA and scratchB hold the text of rowA's and rowB's temporal values.
	scratchA, scratchB []byte
	valBuf             []byte
	posHdr             []byte    // kanal.pos of the rows event being handled
	posText            []byte    // the text of posHdr, which is carved from the arena when first needed
	eventTime          time.Time // the Kafka timestamp of the rows event's records
	arena              arena
	records            blocks[kgo.Record]
	headers            blocks[kgo.RecordHeader]
	// gen counts the records carved since the last seal; sealed generations
	// wait for the client to be done with their records (nextChange).
	gen    *recordGen
	sealed []*recordGen
}

func (p *Producer) runOnce(ctx context.Context) (progressed bool, err error) {
	cfg := &p.cfg
	db, err := openSQL(&cfg.Source)
	if err != nil {
		return false, sourceFailed(&cfg.Source, err)
	}
	defer db.Close()
	checkCtx, cancel := context.WithTimeout(ctx, cfg.Source.ConnectTimeout)
	info, err := checkServer(checkCtx, db, &cfg.Source)
	cancel()
	if err != nil {
		return false, sourceFailed(&cfg.Source, err)
	}
	if !p.includeChecked {
		p.warnUnmatchedIncludes(ctx, db)
		p.includeChecked = true
	}
	w, err := newWriter(&cfg.Kafka, cfg.Source.Name, p.log, p.brokers)
	if err != nil {
		return false, kafkaFailed(&cfg.Kafka.Config, err)
	}
	defer w.close()
	// One bounded request first: a broker that is down, or a listener that does
	// not speak SASL or TLS as configured, fails here within seconds instead of
	// in the client's internal retries.
	pingCtx, cancel := context.WithTimeout(ctx, cfg.Source.ConnectTimeout)
	err = w.cl.Ping(pingCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		return false, kafkaFailed(&cfg.Kafka.Config, fmt.Errorf("connect: %w", err))
	}
	if p.beforeFence != nil {
		if err := p.beforeFence(ctx); err != nil {
			return false, err
		}
	}
	if err := w.fence(ctx); err != nil {
		return false, err
	}
	if !p.limitsLogged {
		w.logBrokerLimits(ctx)
		p.limitsLogged = true
	}
	if err := w.ensureInternalTopics(ctx); err != nil {
		return false, err
	}
	pos, err := w.loadPosition(ctx)
	if err != nil {
		return false, kafkaFailed(&cfg.Kafka.Config, err)
	}
	if err := checkWatermark(ctx, db, &cfg.Source, pos == nil && cfg.Source.Start == "snapshot"); err != nil {
		return false, sourceFailed(&cfg.Source, err)
	}
	var initial []string // source.start: snapshot: the tables to backfill first
	files, err := binlogFiles(ctx, db)
	if err != nil {
		return false, sourceFailed(&cfg.Source, err)
	}
	if len(files) == 0 {
		return false, fmt.Errorf("%w: %s has no binary logs", ErrServerConfig, cfg.Source.Addr)
	}
	switch {
	case pos != nil:
		found := false
		for _, f := range files {
			found = found || f == pos.File
		}
		if !found {
			return false, &BinlogPurgedError{Source: cfg.Source.Name, Want: *pos, Oldest: files[0]}
		}
		p.log.Info("resuming", "position", pos.String(), "seq", pos.Seq)
	case cfg.Source.Start == "earliest":
		pos = &schemas.Position{File: files[0], Pos: 4}
		p.log.Info("no stored position; starting at the oldest binlog", "position", pos.String())
	default:
		cur, err := currentPosition(ctx, db, info.flavor)
		if err != nil {
			return false, sourceFailed(&cfg.Source, err)
		}
		pos = &cur
		p.log.Info("no stored position; starting at the current binlog position", "position", pos.String())
		if cfg.Source.Start == "snapshot" {
			if initial, err = capturedTables(ctx, db, captureFilter(cfg)); err != nil {
				return false, err
			}
			if initial == nil {
				initial = []string{} // nothing to backfill; the state still records that it was done
			}
		}
	}
	pos.Source, pos.Flavor, pos.ServerID = cfg.Source.Name, info.flavor, info.serverID
	stopMonitor := p.startMonitor(ctx, db, *pos)
	defer stopMonitor()

	enc, err := schemas.NewEncoder(cfg.Kafka.Format, schemas.EncoderConfig{TopicPrefix: cfg.Kafka.TopicPrefix, Registry: p.registry, Source: cfg.Source.Name})
	if err != nil {
		return false, fmt.Errorf("%w: kafka.format: %w", ErrConfig, err)
	}
	s := &session{
		p: p, cfg: cfg, log: p.log, w: w, info: info,
		filter: captureFilter(cfg),
		text:   &sourceText{collations: charset.NewCollations(), mariadb: info.flavor == "mariadb", lookup: serverCollation(db, p.log)},
		tables: map[uint64]*tableInfo{},
		streamState: streamState{
			file:     pos.File,
			boundary: schemas.Position{File: pos.File, Pos: pos.Pos, GTIDSet: pos.GTIDSet, Seq: pos.Seq},
			seq:      pos.Seq,
		},
		txnState:    txnState{skipRows: pos.RowsDone},
		recordState: recordState{enc: enc, formatHdr: []byte(enc.Format())},
	}
	s.initBlocks()
	w.waited = &p.stats.CommitNanos
	if s.gtidSet, err = mysql.ParseGTIDSet(info.flavor, pos.GTIDSet); err != nil {
		s.log.Warn("stored GTID set unreadable; tracking GTIDs from here", "gtid_set", pos.GTIDSet, "err", err)
		s.gtidSet, _ = mysql.ParseGTIDSet(info.flavor, "")
	}
	if s.snap, err = newSnapshotter(ctx, s, pos.Snapshot); err != nil {
		return false, err
	}
	defer s.snap.close()
	if initial != nil {
		s.log.Info("source.start is snapshot: backfilling the captured tables, then streaming", "tables", len(initial))
		s.snap.queueInitial(initial)
	}
	err = s.stream(ctx)
	return s.progressed, err
}

// syncerConfig is the replication connection's configuration in go-mysql's terms:
// replicaConn connects with it as BinlogSyncer would (binlogconn.go).
func (s *session) syncerConfig() (replication.BinlogSyncerConfig, error) {
	host, portStr, err := net.SplitHostPort(s.cfg.Source.Addr)
	if err != nil {
		return replication.BinlogSyncerConfig{}, fmt.Errorf("%w: source.addr: %v", ErrConfig, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return replication.BinlogSyncerConfig{}, fmt.Errorf("%w: source.addr: bad port %q", ErrConfig, portStr)
	}
	password, err := secret.Password("source.password", s.cfg.Source.Password, s.cfg.Source.PasswordFile)
	if err != nil {
		return replication.BinlogSyncerConfig{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	tc, err := s.cfg.Source.TLS.Client("source.tls")
	if err != nil {
		return replication.BinlogSyncerConfig{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if tc != nil && tc.ServerName == "" && !tc.InsecureSkipVerify {
		tc.ServerName = host
	}
	return replication.BinlogSyncerConfig{
		ServerID:  s.cfg.Source.ServerID,
		Flavor:    s.info.flavor,
		Host:      host,
		Port:      uint16(port),
		User:      s.cfg.Source.User,
		Password:  password,
		TLSConfig: tc,
		ParseTime: true,
		// The server sends heartbeats when idle, so a long silence while we wait
		// for it means a dead connection: silenceConn fails the read then (and
		// go-mysql's own per-packet ReadTimeout stays off, see silence.go).
		HeartbeatPeriod:  sourceHeartbeat,
		Dialer:           silenceDialer(sourceSilenceLimit),
		DisableRetrySync: true, // we reconnect ourselves, from the committed position
		Logger:           s.log.With("component", "go-mysql"),
	}, nil
}

func (s *session) stream(ctx context.Context) error {
	scfg, err := s.syncerConfig()
	if err != nil {
		return err
	}
	conn, err := dialReplica(ctx, &scfg)
	if err == nil {
		if err = conn.dump(mysql.Position{Name: s.boundary.File, Pos: s.boundary.Pos}); err != nil {
			conn.c.Close()
		}
	}
	if err != nil {
		hint := ""
		if accessDenied(err) {
			hint = " (reading the binlog needs REPLICATION SLAVE on *.*)"
		}
		return sourceFailed(&s.cfg.Source, fmt.Errorf("source %s: start binlog sync at %s%s: %w", s.cfg.Source.Addr, s.boundary.String(), hint, err))
	}
	// The stream reads and parses in a goroutine of its own; rows of captured
	// tables are decoded there by kanal's own decoder, straight into the values
	// the session encodes (see rowDecoder).
	streamCtx, stopStream := context.WithCancel(ctx)
	st := newBinlogStream(conn, s.log, newRowDecoder(s.filter, s.text, &s.p.stats.SlowRowsEvents), newTableMetaCache(),
		scfg.Flavor, streamCtx.Done())
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		st.run()
	}()
	defer func() {
		// Closing the connection ends a read under way; stopStream one blocked
		// on a full queue.
		stopStream()
		conn.close(s.log)
		<-streamDone
	}()
	q := newEventQueue(st, s.cfg.Kafka.FlushIdle)
	s.p.brokers.streaming.Store(true)
	defer s.p.brokers.streaming.Store(false)
	s.p.live.setStreaming(true, s.boundary.File, s.boundary.Pos)
	defer s.p.live.setStreaming(false, "", 0)

	var tick <-chan time.Time
	if hb := s.cfg.Source.HeartbeatInterval; hb > 0 {
		t := time.NewTicker(hb)
		defer t.Stop()
		tick = t.C
	}
	s.lastCommit = time.Now()
	s.file, s.lastEnd = s.boundary.File, s.boundary.Pos
	if err := s.snap.advance(ctx, q.idle); err != nil {
		return err
	}
	for {
		pe, ok := q.take()
		if !ok && s.w.inTxn && !s.inTxn && len(q.ch) == 0 {
			// Nothing queued and no binlog transaction open, but the last one's
			// Kafka transaction is: it was followed by events outside any
			// transaction (a rotation's, checkpoints), so endTxn saw more
			// coming and did not commit. Commit now rather than leave it
			// invisible until the source writes again.
			if err := s.commit(ctx); err != nil {
				s.w.abort()
				return err
			}
		}
		if !ok {
			select {
			case <-ctx.Done():
				return s.shutdown()
			case <-tick:
				if err := s.heartbeat(ctx); err != nil {
					s.w.abort()
					return err
				}
				continue
			case <-s.w.flightDone():
				if err := s.w.settle(ctx, false); err != nil {
					s.w.abort()
					return err
				}
				continue
			case b := <-q.ch:
				q.put(b)
				continue
			case res := <-s.snap.results:
				s.snap.received(res)
				if err := s.snap.advance(ctx, q.idle); err != nil {
					s.w.abort()
					return err
				}
				continue
			case m := <-s.snap.signalsCh:
				s.snap.signal(m)
				if err := s.snap.advance(ctx, q.idle); err != nil {
					s.w.abort()
					return err
				}
				continue
			}
		}
		// Events already queued are taken without a select each (selecting was
		// ~4 % of the producer's CPU); ticks and cancellation get their turn
		// again after at most 128 events.
		for n := 0; ; n++ {
			if ctx.Err() != nil {
				// Stop promptly: the position committed covers only what was handled.
				return s.shutdown()
			}
			if pe.err != nil {
				s.w.abort()
				return s.classifyStreamErr(pe.err)
			}
			if err := s.handle(ctx, pe.ev, q.idle); err != nil {
				s.w.abort()
				return err
			}
			if s.w.flight != nil {
				// Events that produce nothing still see the commit end.
				if err := s.w.settle(ctx, false); err != nil {
					s.w.abort()
					return err
				}
			}
			if !s.inTxn && s.snap.busy() {
				if err := s.snap.advance(ctx, q.idle); err != nil {
					s.w.abort()
					return err
				}
			}
			if n == 127 {
				break
			}
			if pe, ok = q.take(); ok {
				continue
			}
			if len(q.ch) == 0 {
				break
			}
			q.put(<-q.ch)
			if pe, ok = q.take(); !ok {
				break
			}
		}
	}
}

// classifyStreamErr turns the server's "purged" answer into BinlogPurgedError.
func (s *session) classifyStreamErr(err error) error {
	var me *mysql.MyError
	if errors.As(err, &me) && me.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG {
		oldest := "unknown"
		if db, e := openSQL(&s.cfg.Source); e == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if files, e := binlogFiles(ctx, db); e == nil && len(files) > 0 {
				oldest = files[0]
			}
			cancel()
			db.Close()
		}
		if strings.Contains(strings.ToLower(me.Message), "purged") || strings.Contains(me.Message, "Could not find first log") {
			return &BinlogPurgedError{Source: s.cfg.Source.Name, Want: s.boundary, Oldest: oldest}
		}
	}
	return sourceFailed(&s.cfg.Source, fmt.Errorf("source %s: read binlog after %s: %w", s.cfg.Source.Addr, s.boundary.String(), err))
}

// shutdown commits what is already written (a clean stop loses nothing and leaves no
// open transaction behind).
func (s *session) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.w.settle(ctx, true); err != nil {
		s.w.abort()
		return fmt.Errorf("commit on shutdown: %w", err)
	}
	if !s.w.inTxn {
		return nil
	}
	err := s.commit(ctx)
	if err == nil {
		err = s.w.settle(ctx, true)
	}
	if err != nil {
		s.w.abort()
		return fmt.Errorf("commit on shutdown: %w", err)
	}
	s.log.Info("committed on shutdown", "position", s.currentPosition().String())
	return nil
}

// currentPosition is where a restart must resume to skip exactly what was written.
func (s *session) currentPosition() schemas.Position {
	pos := s.boundary
	if s.inTxn {
		pos = s.txnStart
		pos.RowsDone = s.txnRows
		pos.GTID = s.txnGTID
	}
	pos.Source, pos.Flavor, pos.ServerID = s.cfg.Source.Name, s.info.flavor, s.info.serverID
	pos.GTIDSet = s.gtidSet.String()
	pos.Seq = s.seq
	pos.TsMs = s.lastTs
	pos.Snapshot = s.snap.position()
	return pos
}

// commit ends the open Kafka transaction at the current position. The flush and
// EndTransaction run on a goroutine of their own (writer.commit) while the session
// goes on encoding; committed does the bookkeeping once the commit has succeeded.
func (s *session) commit(ctx context.Context) error {
	pos := s.currentPosition()
	changes := s.p.stats.Changes.Load()
	// The records encoded from here on wait for the next transaction: their
	// memory must outlive this commit's release (see released).
	s.sealGen()
	s.committedMidTxn = pos.RowsDone > 0
	s.heldSince = time.Time{}
	return s.w.commit(ctx, pos, func(d time.Duration, bytes int) { s.committed(pos, d, bytes, changes) })
}

// committed is the bookkeeping of a successful commit at pos, changes being the
// count of changes handled when it started.
func (s *session) committed(pos schemas.Position, d time.Duration, bytes int, changes uint64) {
	// bytes counts the whole transaction, its position record too.
	s.p.committed(pos, d, bytes)
	s.released()
	s.p.stats.Committed.Store(changes)
	s.p.stats.Commits.Add(1)
	s.lastCommit = time.Now()
	s.progressed = true
	if s.p.commitHook != nil {
		s.p.commitHook(pos)
	}
}

func (s *session) heartbeat(ctx context.Context) error {
	if s.w.inTxn || s.inTxn || time.Since(s.lastCommit) < s.cfg.Source.HeartbeatInterval {
		return nil
	}
	pos := s.currentPosition()
	hb := schemas.Heartbeat{Source: s.cfg.Source.Name, TsMs: time.Now().UnixMilli(), SourceTsMs: pos.TsMs, File: pos.File, Pos: pos.Pos}
	val, _ := jsonMarshal(hb)
	if err := s.w.produce(ctx, &kgo.Record{Topic: schemas.HeartbeatsTopic(s.cfg.Kafka.TopicPrefix), Key: []byte(s.cfg.Source.Name), Value: val}); err != nil {
		return err
	}
	s.p.stats.Heartbeats.Add(1)
	return s.commit(ctx)
}

func (s *session) beginTxn() {
	if s.inTxn {
		return
	}
	s.inTxn = true
	s.txnStart = s.boundary
	s.txnRows = 0
	s.txnGTID = ""
	s.txnMariaOK = false
}

// mariaGTIDString formats a MariaDB GTID as MariadbGTID.String does
// ("domain-server-seq", "" for the zero GTID), without fmt: it runs once per
// transaction, and most transactions are one row.
func mariaGTIDString(g *mysql.MariadbGTID) string {
	if g.DomainID == 0 && g.ServerID == 0 && g.SequenceNumber == 0 {
		return ""
	}
	var buf [64]byte
	b := strconv.AppendUint(buf[:0], uint64(g.DomainID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, uint64(g.ServerID), 10)
	b = append(b, '-')
	b = strconv.AppendUint(b, g.SequenceNumber, 10)
	return string(b)
}

// endTxn marks the end of a binlog transaction at the given end position and
// commits the Kafka transaction when a flush limit is reached or no more events are
// waiting (so an idle source's changes are visible at once, and a busy one's are
// batched).
func (s *session) endTxn(ctx context.Context, endPos uint32, idle func() bool) error {
	if s.inTxn && s.txnGTID != "" {
		var err error
		if ms, ok := s.gtidSet.(*mysql.MariadbGTIDSet); ok && s.txnMariaOK {
			err = ms.AddSet(&s.txnMariaGTID) // what Update does after parsing the text
		} else {
			err = s.gtidSet.Update(s.txnGTID)
		}
		if err != nil {
			s.log.Warn("cannot track GTID", "gtid", s.txnGTID, "err", err)
		}
	}
	s.inTxn = false
	s.skipRows = 0
	s.boundary = schemas.Position{File: s.file, Pos: endPos}
	if len(s.tables) > maxCachedTables {
		clear(s.tables) // between transactions: the next one repeats its table maps
	}
	s.p.stats.Transactions.Add(1)
	if !s.w.inTxn {
		if s.committedMidTxn && idle() {
			// The transaction's last rows went out in a mid-transaction commit;
			// move the stored position past its end now rather than at the next
			// heartbeat, so a restart does not re-read it.
			return s.commit(ctx)
		}
		return nil
	}
	k := &s.cfg.Kafka
	now := time.Now()
	if s.w.records >= k.FlushRecords || s.w.bytes >= k.FlushBytes || now.Sub(s.w.began) >= k.FlushInterval || idle() {
		return s.commit(ctx)
	}
	s.heldSince = now
	return nil
}

// statementDML reports whether the start of a statement, upper-cased, is a data
// change (what row-based logging writes as rows events instead).
func statementDML(upper string) bool {
	for _, p := range [...]string{"INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD DATA", "LOAD XML"} {
		if strings.HasPrefix(upper, p) && (len(upper) == len(p) || upper[len(p)] == ' ' || upper[len(p)] == '\t' || upper[len(p)] == '\n') {
			return true
		}
	}
	return false
}

func (s *session) handle(ctx context.Context, ev *replication.BinlogEvent, idle func() bool) error {
	h := ev.Header
	if h.Timestamp != 0 {
		s.lastTs = int64(h.Timestamp) * 1000
	}
	s.p.live.event(h, s.lastTs)
	if h.LogPos > 0 && h.EventType != replication.ROTATE_EVENT && h.EventType != replication.HEARTBEAT_EVENT && h.EventType != replication.HEARTBEAT_LOG_EVENT_V2 {
		// Where the stream stands: a backfill's chunk is emitted once this has
		// reached the chunk's snapshot.
		s.lastEnd = h.LogPos
	}
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		s.file = string(e.NextLogName)
		s.p.live.rotate(s.file, uint32(e.Position))
		s.lastEnd = uint32(e.Position)
		if !s.inTxn {
			s.boundary = schemas.Position{File: s.file, Pos: uint32(e.Position)}
		}
	case *replication.FormatDescriptionEvent, *replication.MariadbGTIDListEvent,
		*replication.MariadbBinlogCheckPointEvent, *replication.PreviousGTIDsEvent:
		// A new file's header events: outside any transaction, so the
		// position after them is as good a place to resume as the file's
		// start, and a caught-up producer's position then equals the server's.
		if !s.inTxn && h.LogPos != 0 {
			s.boundary = schemas.Position{File: s.file, Pos: h.LogPos}
		}
	case *replication.MariadbGTIDEvent:
		s.beginTxn()
		s.txnGTID = mariaGTIDString(&e.GTID)
		s.txnMariaGTID, s.txnMariaOK = e.GTID, true
	case *replication.GTIDEvent:
		s.beginTxn()
		if !bytes.Equal(e.SID, make([]byte, len(e.SID))) {
			if next, err := e.GTIDNext(); err == nil {
				s.txnGTID = next.String()
			}
		}
	case *replication.QueryEvent:
		q := strings.TrimSpace(string(e.Query))
		upper := strings.ToUpper(truncate(q, 20))
		switch {
		case upper == "BEGIN":
			s.beginTxn()
		case upper == "COMMIT":
			if s.inTxn {
				return s.endTxn(ctx, h.LogPos, idle)
			}
		case s.inTxn && (strings.HasPrefix(upper, "SAVEPOINT") || strings.HasPrefix(upper, "ROLLBACK TO")):
			// Statements inside a transaction; the rows around them are what counts.
		case statementDML(upper):
			// A session with binlog_format STATEMENT or MIXED (which a client may
			// set for itself) logged a change as SQL text: its rows are not in
			// the binlog, and skipping it would lose them silently.
			return fmt.Errorf("%w: %s: a data change at %s (database %q) was logged as a statement, not as rows: "+
				"the writing session had binlog_format STATEMENT or MIXED. Set binlog_format = ROW globally and in every "+
				"session that writes (SET SESSION binlog_format = 'ROW'), then restart kanal after rebuilding the affected tables' targets",
				ErrServerConfig, s.cfg.Source.Name, s.posString(ev), e.Schema)
		default:
			// DDL commits on its own (see statement). A backfill reads the
			// chunks of a table it may change again.
			s.snap.onDDL(string(e.Schema), q)
			return s.statement(ctx, ev, e, idle)
		}
	case *replication.XIDEvent:
		return s.endTxn(ctx, h.LogPos, idle)
	case *replication.TableMapEvent:
		return s.tableMap(ctx, e)
	case *replication.RowsEvent:
		return s.rows(ctx, ev, e)
	case *replication.TransactionPayloadEvent:
		// MySQL 8's binlog_transaction_compression writes a transaction (all
		// but its GTID event) as one compressed payload, which go-mysql has
		// unpacked and parsed. Its events are handled as if they had come one by
		// one: go-mysql gives the last one (the XID) the payload's end position
		// and the others its start, so a restart inside the transaction reads
		// the payload again and skips the changes already written, as with an
		// uncompressed transaction.
		for _, inner := range e.Events {
			if err := s.handle(ctx, inner, idle); err != nil {
				return err
			}
		}
	}
	return nil
}

// capturedTables lists the tables the filter captures (source.start: snapshot).
func capturedTables(ctx context.Context, db *sql.DB, f filter) ([]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
		WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
		ORDER BY TABLE_SCHEMA, TABLE_NAME`)
	if err != nil {
		return nil, fmt.Errorf("list the tables to snapshot: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var db, table string
		if err := rows.Scan(&db, &table); err != nil {
			return nil, fmt.Errorf("list the tables to snapshot: %w", err)
		}
		if f.match(db, table) {
			out = append(out, db+"."+table)
		}
	}
	return out, rows.Err()
}
