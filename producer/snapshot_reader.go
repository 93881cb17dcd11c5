package producer

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unsafe"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/kanal-cdc/kanal/internal/charset"
	"github.com/kanal-cdc/kanal/schemas"
)

// chunkReq asks the snapshot reader for one chunk of a backfill.
type chunkReq struct {
	gen   uint64 // the coordinator's generation when asked (stale results are dropped)
	id    string // the backfill's ID, for logs
	db    string
	table string
	where string
	// keys: a keyed chunk (kanal verify --repair) of these record keys. Otherwise
	// the chunk is the next limit rows in key order after after (nil: from the
	// first row).
	keys  []string
	after [][]byte
	limit int
	// seq numbers the requests of a snapshotter. chainTo, when not 0, makes the
	// chunk continue after the last row of the request numbered chainTo (the one
	// the reader read just before): the coordinator asks for the next chunk while
	// the previous one is still being read, so the reader goes from one chunk to
	// the next without waiting for the coordinator (after is then nil).
	seq, chainTo uint64
	// boundary is the stream's position when the chunk's window opened: the
	// chunk's snapshot must not be older (see snapshotter).
	boundary schemas.Position
	// estimate: also estimate the backfill's total rows (its first chunk).
	estimate bool
}

// chunkRes is a chunk read at one consistent snapshot.
type chunkRes struct {
	req *chunkReq
	// err fails the producer's session (a lost connection: it restarts);
	// jobErr fails only the backfill (a bad WHERE, no such table, …).
	err, jobErr error
	// at is the binlog position of the snapshot: every transaction before it
	// is in the chunk, none after it.
	at    schemas.Position
	table *snapTable
	ncols int
	rows  int
	vals  []schemas.Value // rows × ncols
	keys  []string        // record keys, one per row
	// rawKey is the key columns of the chunk's last row as the server printed
	// them (nil for NULL), where the next chunk starts.
	rawKey [][]byte
	// more: rows may follow the chunk's last row.
	more bool
	// missing are the keys of a keyed chunk that have no row.
	missing []string
	total   int64 // with req.estimate: the estimated rows (-1 unknown)
	readAt  time.Time
	// bytes is the size of the rows as read.
	bytes int
	// none: a chained chunk with nothing to read (the chunk it continues ended
	// the table, failed, or was not the one read before it); it has no table.
	none bool
	// text are the blocks the chunk's bytes (values, raw and record keys) were
	// copied into; see chunkMem.
	text [][]byte
}

// chunkMem is the memory of an emitted chunk, for the reader to fill again:
// its values, keys and byte blocks were most of the bytes the reader allocated
// (560 of 710 B a row of the orders shape), and a fresh 2.4 MB of values per
// 8,192-row chunk made the garbage collector run about once a chunk (round 7 in
// docs/bench.md).
type chunkMem struct {
	vals []schemas.Value
	keys []string
	text [][]byte
}

// snapSpareChunks is how many emitted chunks' memory the reader keeps for
// reuse: the session emits chunks in bursts (two per Kafka transaction) while
// the reader reads ahead (maxReading).
const snapSpareChunks = 2

// lastRaw returns the raw key of the chunk's last row.
func (r *chunkRes) lastRaw() [][]byte { return r.rawKey }

// backfillError fails one backfill, not the producer: its message names the
// table and what the server said.
type backfillError struct {
	table string
	err   error
}

func (e *backfillError) Error() string { return e.table + ": " + e.err.Error() }
func (e *backfillError) Unwrap() error { return e.err }

// Server errors that a backfill's request causes (and a retry would repeat): the
// backfill fails, the producer carries on.
var backfillSQLErrors = map[uint16]bool{
	1054: true,             // unknown column
	1052: true,             // ambiguous column
	1064: true,             // syntax error
	1146: true,             // no such table
	1142: true, 1143: true, // no privilege on the table or a column
	1267: true, 1270: true, 1271: true, // illegal mix of collations
	1305: true,                         // no such function
	1241: true,                         // operand should contain n columns
	1111: true,                         // invalid use of group function
	1630: true,                         // no such function (with a hint)
	1582: true, 1583: true, 1584: true, // wrong parameters to a function
	1292: true,             // incorrect value (strict mode)
	1366: true, 1367: true, // incorrect value
	1690: true, // value out of range
	1365: true, // division by zero (strict mode)
	1139: true, // regexp error
}

// emptyBytes is a non-NULL empty value.
var emptyBytes = []byte{}

// snapChunkMaxBytes ends a chunk early when its rows hold this much, so that
// chunks of huge rows keep the producer's memory bounded.
const snapChunkMaxBytes = 32 << 20

// snapReader reads chunks on its own connection, one at a time, in a goroutine of
// its own, so that the binlog stream keeps flowing while a chunk is read.
type snapReader struct {
	reqs     chan *chunkReq
	results  chan *chunkRes
	db       *sql.DB
	text     *sourceText
	noPKRule string
	// retryWait is how long the reader waits before reading again a chunk whose
	// snapshot is older than its window (commits still in flight).
	retryWait time.Duration
	// hook, set only by tests, runs after a chunk's snapshot began and before its
	// SELECT, with the table and how many chunks of it were read before.
	hook  func(table string, chunk int)
	reads map[string]int
	// wm starts each chunk's snapshot and tells its binlog position.
	wm *watermarks
	// prevSeq is the request read last; prevNext, when not nil, the key a
	// request chained to it continues after (nil: nothing to continue).
	prevSeq  uint64
	prevNext [][]byte
	// tables caches loadSnapTable's answer per table, with the definition it
	// was read under (see table).
	tables map[string]*cachedSnapTable
	// spare holds emitted chunks' memory (recycle) for the next chunks (scan).
	spare chan *chunkMem
}

// recycle gives the memory of res, a chunk the session has emitted, back to
// the reader, when it has room for it. Nothing may refer to the chunk's
// values, keys or raw keys any more: session.write encodes the values into
// the record before it returns, and the snapshotter keeps copies of the keys
// it holds on to (received, emitChunk).
func (r *snapReader) recycle(res *chunkRes) {
	m := &chunkMem{vals: res.vals[:0], keys: res.keys[:0], text: res.text}
	res.vals, res.keys, res.rawKey, res.text = nil, nil, nil, nil
	select {
	case r.spare <- m:
	default:
	}
}

// dropSpare lets the spare chunks' memory go (no backfill is running).
func (r *snapReader) dropSpare() {
	for {
		select {
		case <-r.spare:
		default:
			return
		}
	}
}

// cachedSnapTable is a table's definition as loadSnapTable read it, and its
// SHOW CREATE TABLE (without AUTO_INCREMENT) at that moment.
type cachedSnapTable struct {
	create string
	st     *snapTable
}

// newSnapReader returns a reader of cfg's source; text is the session's (nil:
// a MariaDB source's own, asking the reader's connection for unknown collations).
func newSnapReader(cfg *SourceConfig, text *sourceText, log *slog.Logger) (*snapReader, error) {
	mc := gomysql.NewConfig()
	mc.User = cfg.User
	mc.Passwd = cfg.Password
	mc.Net = "tcp"
	mc.Addr = cfg.Addr
	mc.Timeout = cfg.ConnectTimeout
	// A chunk with a WHERE that matches few rows may scan long before its first
	// row arrives.
	mc.ReadTimeout = 10 * time.Minute
	mc.Params = map[string]string{
		// TIMESTAMPs in UTC, text as stored (the binlog's bytes), so that values
		// become what the binlog path makes of them.
		"time_zone":             "'+00:00'",
		"character_set_results": "binary",
	}
	// The source's TLS and password file, as every connection to it.
	conn := cfg.conn()
	if err := conn.ApplyMySQL(mc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	connector, err := conn.MySQLConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	if text == nil {
		// A reader without the session's text (kanal verify) decodes as MariaDB's.
		text = &sourceText{collations: charset.NewCollations(), mariadb: true, lookup: serverCollation(db, log)}
	}
	return &snapReader{reqs: make(chan *chunkReq, 4), results: make(chan *chunkRes, 4), db: db, text: text,
		noPKRule: cfg.NoPrimaryKey, retryWait: time.Millisecond, reads: map[string]int{}, wm: newWatermarks(cfg),
		tables: map[string]*cachedSnapTable{}, spare: make(chan *chunkMem, snapSpareChunks)}, nil
}

// run reads the chunks asked for until ctx ends.
func (r *snapReader) run(ctx context.Context) {
	defer r.db.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.reqs:
			res := r.readNext(ctx, req)
			select {
			case r.results <- res:
			case <-ctx.Done():
				return
			}
		}
	}
}

// readNext reads req, resolving a chained request against the chunk read
// before it.
func (r *snapReader) readNext(ctx context.Context, req *chunkReq) *chunkRes {
	if req.chainTo != 0 {
		if req.chainTo != r.prevSeq || r.prevNext == nil {
			// Nothing to continue: the chunk before ended the table or failed
			// (or was dropped); the coordinator goes on from the last chunk it
			// received.
			r.prevSeq, r.prevNext = req.seq, nil
			return &chunkRes{req: req, total: -1, none: true}
		}
		c := *req
		c.after = r.prevNext
		req = &c
	}
	res := r.read(ctx, req)
	r.prevSeq, r.prevNext = req.seq, nil
	if res.err == nil && res.jobErr == nil && res.more && res.rows > 0 && len(req.keys) == 0 {
		// A copy: the chunk's rows belong to the coordinator now.
		for _, b := range res.lastRaw() {
			if b != nil {
				b = append([]byte{}, b...)
			}
			r.prevNext = append(r.prevNext, b)
		}
	}
	return res
}

func (r *snapReader) read(ctx context.Context, req *chunkReq) *chunkRes {
	res := &chunkRes{req: req, total: -1}
	name := req.db + "." + req.table
	fail := func(err error) *chunkRes {
		var me *gomysql.MySQLError
		var be *backfillError
		switch {
		case errors.As(err, &be):
			res.jobErr = err
		case errors.As(err, &me) && backfillSQLErrors[me.Number],
			errors.Is(err, errUnsupportedColumn), errors.Is(err, errNoSuchTable), errors.Is(err, ErrNoPrimaryKey),
			errors.Is(err, errSnapshotUnsupported), errors.Is(err, errWatermark), errors.Is(err, ErrCharset):
			res.jobErr = &backfillError{table: name, err: err}
		default:
			res.err = fmt.Errorf("snapshot of %s: %w", name, err)
		}
		return res
	}
	conn, err := r.db.Conn(ctx)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	if req.estimate {
		if res.total, err = r.estimate(ctx, conn, req); err != nil {
			return fail(err)
		}
	}
	wait := r.retryWait
	for attempt := 0; ; attempt++ {
		retry, err := r.readOnce(ctx, conn, req, res)
		if err == nil && !retry {
			return res
		}
		var me *gomysql.MySQLError
		if err != nil && !(errors.As(err, &me) && me.Number == 1412) { // table definition changed: read again
			return fail(err)
		}
		if attempt >= 200 {
			return fail(fmt.Errorf("no consistent snapshot at or after the stream's position %s after %d attempts (last %s)", req.boundary, attempt, res.at))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

var errSnapshotUnsupported = errors.New("snapshots are not supported by this server")

// readOnce reads the chunk at one consistent snapshot. retry says the snapshot
// was older than the stream's position when the chunk's window opened: a
// transaction the stream has already handled may not be visible in it yet.
func (r *snapReader) readOnce(ctx context.Context, conn *sql.Conn, req *chunkReq, res *chunkRes) (retry bool, err error) {
	defer func() {
		if _, e := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); e != nil && err == nil {
			err = e
		}
	}()
	// The snapshot and its binlog position (snapshot_watermark.go).
	if res.at, err = r.wm.begin(ctx, conn); err != nil {
		return false, err
	}
	if comparePos(res.at, req.boundary) < 0 {
		return true, nil
	}
	if r.hook != nil {
		name := req.db + "." + req.table
		r.hook(name, r.reads[name])
		r.reads[name]++
	}
	st, err := r.table(ctx, conn, req.db, req.table)
	if err != nil {
		return false, err
	}
	if st.ti.keyFallback && r.noPKRule == "refuse" {
		return false, fmt.Errorf("%w: %s.%s (source.no_primary_key is refuse: add a primary key, or set no_primary_key: all-columns)", ErrNoPrimaryKey, req.db, req.table)
	}
	res.table = st
	query, err := chunkQuery(st, req)
	if err != nil {
		return false, &backfillError{table: req.db + "." + req.table, err: err}
	}
	res.readAt = time.Now()
	// A prepared statement: its rows come in the binary protocol, which carries
	// FLOAT and DOUBLE exactly and numbers as numbers. The rows are read from
	// the driver itself: database/sql would turn every number into text (for
	// sql.RawBytes) only for fromText to parse it again, and lock and convert
	// per row; that was a third of the reader's CPU.
	if err := conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return fmt.Errorf("driver connection %T cannot prepare statements", dc)
		}
		stmt, err := pc.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer stmt.Close()
		qc, ok := stmt.(driver.StmtQueryContext)
		if !ok {
			return fmt.Errorf("driver statement %T cannot query", stmt)
		}
		rs, err := qc.QueryContext(ctx, nil)
		if err != nil {
			return err
		}
		defer rs.Close()
		return res.scan(rs, st, req, r.spare)
	}); err != nil {
		return false, err
	}
	if len(req.keys) > 0 {
		found := make(map[string]bool, res.rows)
		for _, k := range res.keys {
			found[k] = true
		}
		for _, k := range req.keys {
			if !found[k] {
				res.missing = append(res.missing, k)
			}
		}
	}
	return false, nil
}

// table returns db.table's definition for a chunk (inside its snapshot, as
// loadSnapTable): its SHOW CREATE TABLE says whether the definition read for an
// earlier chunk still holds. The CREATE TABLE statement names everything
// loadSnapTable derives the table from (columns, types, charsets, collations,
// ENUM/SET labels, the key), and reading it is one statement, where
// loadSnapTable's are three or more on information_schema, per chunk: besides
// the round trips, MariaDB 10.11 now and then crashed in the COLUMNS query
// (free_tmp_table → ha_maria::drop_table, SIGSEGV) when it ran for every chunk.
// Each chunk gets its own copy of the tableInfo: the session sets the encoder
// and topic of the one it emits with.
func (r *snapReader) table(ctx context.Context, conn *sql.Conn, db, table string) (*snapTable, error) {
	create, err := showCreateTable(ctx, conn, db, table)
	if err != nil {
		var me *gomysql.MySQLError
		if errors.As(err, &me) && me.Number == 1146 {
			return nil, fmt.Errorf("%w: %s.%s", errNoSuchTable, db, table)
		}
		return nil, fmt.Errorf("SHOW CREATE TABLE %s.%s: %w", db, table, err)
	}
	def := string(autoIncrementOption.ReplaceAll(create, nil))
	key := db + "." + table
	c := r.tables[key]
	if c == nil || c.create != def {
		st, err := loadSnapTable(ctx, conn, r.text, db, table)
		if err != nil {
			return nil, err
		}
		c = &cachedSnapTable{create: def, st: st}
		r.tables[key] = c
	}
	st := *c.st
	ti := *st.ti
	st.ti = &ti
	return &st, nil
}

// showCreateTable returns the statement SHOW CREATE TABLE shows for db.table
// (its second column; a view answers with more).
func showCreateTable(ctx context.Context, conn *sql.Conn, db, table string) ([]byte, error) {
	rows, err := conn.QueryContext(ctx, "SHOW CREATE TABLE "+quoteIdent(db)+"."+quoteIdent(table))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	var create []byte
	if rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if len(raw) > 1 {
			create = append([]byte{}, raw[1]...)
		}
	}
	return create, errors.Join(rows.Err(), rows.Close())
}

// autoIncrementOption is the table option SHOW CREATE TABLE shows for the next
// AUTO_INCREMENT value, which every insert moves.
var autoIncrementOption = regexp.MustCompile(` AUTO_INCREMENT=[0-9]+`)

// chunkQuery is the chunk's SELECT.
func chunkQuery(st *snapTable, req *chunkReq) (string, error) {
	var conds []string
	if req.where != "" {
		conds = append(conds, "("+req.where+")")
	}
	switch {
	case len(req.keys) > 0:
		c, err := st.keysCondition(req.keys)
		if err != nil {
			return "", err
		}
		conds = append(conds, c)
	case req.after != nil:
		c, err := st.afterKey(req.after)
		if err != nil {
			return "", err
		}
		conds = append(conds, c)
	}
	q := "SELECT " + st.selectList + " FROM " + quoteIdent(st.db) + "." + quoteIdent(st.table)
	if len(conds) > 0 {
		q += " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY " + st.orderBy
	if len(req.keys) == 0 {
		q += " LIMIT " + strconv.Itoa(req.limit)
	}
	return q, nil
}

// scan reads the rows into res, decoded as the binlog path decodes them, into
// the memory of an emitted chunk when spare has one.
func (res *chunkRes) scan(rs driver.Rows, st *snapTable, req *chunkReq, spare <-chan *chunkMem) error {
	ti := st.ti
	n := len(ti.decoders)
	if got := len(rs.Columns()); got != n {
		return fmt.Errorf("the chunk's SELECT returned %d columns, the table has %d", got, n)
	}
	res.ncols = n
	dest := make([]driver.Value, n)
	isKey := make([]bool, n)
	for _, c := range ti.pk {
		isKey[c] = true
	}
	// Row bytes, formatted values and keys go to blocks that never move: the
	// values point into them until the chunk is emitted. The driver's bytes are
	// only valid until the next row. An emitted chunk's memory is filled again
	// when there is one (recycle).
	text := blocks[byte]{size: 256 << 10, noClear: true}
	rows := max(req.limit, len(req.keys))
	var mem *chunkMem
	if len(req.keys) == 0 && spare != nil {
		select {
		case mem = <-spare:
		default:
		}
	}
	if mem != nil {
		res.vals, res.keys = mem.vals, mem.keys
		text.free, text.maxFree = mem.text, len(mem.text)
	} else {
		res.vals = make([]schemas.Value, 0, rows*n)
		res.keys = make([]string, 0, rows)
	}
	defer func() { res.text = text.seal() }()
	keep := func(b []byte) []byte {
		if b == nil {
			return nil // NULL
		}
		if len(b) == 0 {
			return emptyBytes
		}
		if len(b) > cap(text.cur)-len(text.cur) {
			if len(b) > text.size/4 {
				return append([]byte(nil), b...)
			}
			text.grow()
		}
		m := len(text.cur)
		text.cur = append(text.cur, b...)
		return text.cur[m:len(text.cur):len(text.cur)]
	}
	var scratch, keyBuf, num []byte
	kept := make([][]byte, n)
	// nums are the key columns the driver returned as numbers, for the raw key
	// of the chunk's last row (lastRawKey): printing it for every row was a
	// share of the reader's CPU.
	nums := make([]driver.Value, n)
	lastRawKey := func() error {
		res.rawKey = nil
		if res.rows == 0 {
			return nil
		}
		for _, c := range ti.pk {
			b := kept[c]
			if x := nums[c]; x != nil {
				var err error
				if num, err = appendNumber(num[:0], x); err != nil {
					return err
				}
				b = keep(num)
			}
			res.rawKey = append(res.rawKey, b)
		}
		return nil
	}
	for {
		if err := rs.Next(dest); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		row := len(res.vals)
		for c := range n {
			d := &ti.decoders[c]
			var v schemas.Value
			var err error
			nums[c] = nil
			switch x := dest[c].(type) {
			case nil:
				kept[c] = nil
				v = schemas.NullValue()
			case []byte:
				b := keep(x)
				kept[c] = b
				res.bytes += len(b)
				v, err = d.fromText(b, &scratch)
			default:
				var direct bool
				v, direct, err = d.fromNumber(x, &scratch)
				kept[c] = nil
				if direct && isKey[c] {
					nums[c] = x
				}
				if err == nil && !direct {
					// The number as database/sql prints it, for fromText (and
					// the key's raw form: chunk boundaries, the stored progress).
					if num, err = appendNumber(num[:0], x); err == nil {
						kept[c] = keep(num)
						v, err = d.fromText(kept[c], &scratch)
					}
				}
				res.bytes += 8
			}
			if err != nil {
				return &backfillError{table: st.db + "." + st.table, err: fmt.Errorf("column %s: %w", ti.columns[c].Name, err)}
			}
			res.vals = append(res.vals, v)
			if len(scratch) > 64<<10 {
				scratch = nil // values keep the old array; start a new one
			}
		}
		vals := res.vals[row : row+n]
		keyBuf = schemas.AppendKeyValues(keyBuf[:0], ti.db, ti.table, vals, ti.pk)
		k := keep(keyBuf)
		res.keys = append(res.keys, unsafe.String(unsafe.SliceData(k), len(k)))
		res.rows++
		if res.bytes >= snapChunkMaxBytes && len(req.keys) == 0 {
			res.more = true
			return lastRawKey()
		}
	}
	res.more = len(req.keys) == 0 && res.rows >= req.limit
	return lastRawKey()
}

// appendNumber appends a number the driver returned as database/sql prints it
// into sql.RawBytes.
func appendNumber(dst []byte, x driver.Value) ([]byte, error) {
	switch x := x.(type) {
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case float32:
		return strconv.AppendFloat(dst, float64(x), 'g', -1, 32), nil
	case float64:
		return strconv.AppendFloat(dst, x, 'g', -1, 64), nil
	}
	return nil, fmt.Errorf("unexpected value of type %T from the driver", x)
}

// estimate returns the backfill's estimated rows: the server's table statistics,
// or with a WHERE a COUNT when it finishes within two seconds. It also checks
// that the WHERE is valid before anything is emitted.
func (r *snapReader) estimate(ctx context.Context, conn *sql.Conn, req *chunkReq) (int64, error) {
	if len(req.keys) > 0 {
		return int64(len(req.keys)), nil
	}
	tbl := quoteIdent(req.db) + "." + quoteIdent(req.table)
	if req.where != "" {
		if _, err := conn.ExecContext(ctx, "DO (SELECT 1 FROM "+tbl+" WHERE ("+req.where+") LIMIT 0)"); err != nil {
			return -1, err
		}
		var n int64
		err := conn.QueryRowContext(ctx, "SET STATEMENT max_statement_time=2 FOR SELECT COUNT(*) FROM "+tbl+" WHERE ("+req.where+")").Scan(&n)
		if err == nil {
			return n, nil
		}
		var me *gomysql.MySQLError
		if !errors.As(err, &me) || backfillSQLErrors[me.Number] {
			return -1, err
		}
		// Too slow (or no max_statement_time): the table's estimate bounds it.
	}
	var n sql.NullInt64
	err := conn.QueryRowContext(ctx, "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", req.db, req.table).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return -1, fmt.Errorf("%w: %s.%s", errNoSuchTable, req.db, req.table)
	}
	if err != nil || !n.Valid {
		return -1, err
	}
	return n.Int64, nil
}

// comparePos orders binlog positions: by file (by the number after the last
// dot when both names share the part before it), then by position.
func comparePos(a, b schemas.Position) int {
	if a.File != b.File {
		ab, an, aok := strings.Cut(a.File, ".")
		bb, bn, bok := strings.Cut(b.File, ".")
		if aok && bok && ab == bb {
			x, e1 := strconv.ParseUint(an, 10, 64)
			y, e2 := strconv.ParseUint(bn, 10, 64)
			if e1 == nil && e2 == nil && x != y {
				if x < y {
					return -1
				}
				return 1
			}
		}
		return strings.Compare(a.File, b.File)
	}
	switch {
	case a.Pos < b.Pos:
		return -1
	case a.Pos > b.Pos:
		return 1
	}
	return 0
}
