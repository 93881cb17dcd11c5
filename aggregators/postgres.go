package aggregators

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/dbconn"
	"github.com/kanal-cdc/kanal/internal/sqloffsets"
)

// postgres is a Postgres target (pgx). A batch is three round trips: BEGIN,
// the offset lock and the state reads pipelined; a COPY of the new state rows;
// then every other write and COMMIT pipelined.
type postgres struct {
	pool *pgxpool.Pool
	// db is database/sql over pool, for the offsets table's setup, loads and
	// resets; batches pipeline its statements on pool.
	db      *sql.DB
	conn    *dbconn.Settings // explains connection errors
	log     *slog.Logger
	offsets *sqloffsets.Table

	mu      sync.Mutex
	setUpOK bool
	// claimed are the partitions whose offset row a batch of this process
	// locked and committed: the row exists.
	claimed map[offsetKey]bool
}

// offsetKey names a partition's row in the offsets table.
type offsetKey struct {
	group, topic string
	partition    int32
}

func newPostgres(cfg Config, log *slog.Logger) (*postgres, error) {
	pc, err := pgxpool.ParseConfig(cfg.Target.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: target.dsn: not a valid Postgres connection string", ErrConfig)
	}
	pc.MaxConns = int32(cfg.Target.MaxConns)
	pc.ConnConfig.ConnectTimeout = cfg.Target.ConnectTimeout
	cs := cfg.Target.conn(net.JoinHostPort(pc.ConnConfig.Host, strconv.Itoa(int(pc.ConnConfig.Port))))
	if err := cs.ApplyPostgres(pc.ConnConfig); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cs.WarnPostgres(log, pc.ConnConfig)
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("aggregators: postgres pool: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	return &postgres{pool: pool, db: db, conn: cs, log: log, claimed: map[offsetKey]bool{}, offsets: sqloffsets.New(sqloffsets.Postgres, db, cfg.OffsetsTable)}, nil
}

func (p *postgres) close() {
	p.db.Close()
	p.pool.Close()
}
func (p *postgres) dialect() *dialect { return &pgTypes }

func (p *postgres) ping(ctx context.Context) error {
	return p.conn.ExplainPostgres(p.db.PingContext(ctx))
}

// ignoreExists treats "already exists" races of concurrent CREATE … IF NOT
// EXISTS as success.
func ignoreExists(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07" || pe.Code == "42710") {
		return nil
	}
	return err
}

func (p *postgres) setup(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.setUpOK {
		return nil
	}
	if err := p.offsets.Setup(ctx); err != nil {
		return fmt.Errorf("aggregators: postgres: %w", p.conn.ExplainPostgres(err))
	}
	p.setUpOK = true
	return nil
}

// pgSummaryDDL returns the CREATE statements of a summary and its state table.
func pgSummaryDDL(s *summaryRT, groupTypes, sumTypes []string) []ddl {
	q := func(n string) string { return `"` + n + `"` }
	var cols, idx []string
	cols = append(cols, `kanal_group bytea PRIMARY KEY`)
	for i, g := range s.GroupBy {
		cols = append(cols, q(g.Column)+" "+groupTypes[i])
		idx = append(idx, q(g.Column))
	}
	cols = append(cols, q(s.countColumn())+" bigint NOT NULL")
	for i, m := range s.Sums {
		cols = append(cols, q(m.Column)+" "+sumTypes[i]+" NOT NULL")
	}
	table := quoteTable(s.Table, '"')
	stmts := []ddl{{"summary table " + s.Table, "CREATE TABLE IF NOT EXISTS " + table + " (\n\t" + strings.Join(cols, ",\n\t") + "\n)"}}
	if len(idx) > 0 {
		name := s.Table[strings.LastIndex(s.Table, ".")+1:] + "_groups"
		stmts = append(stmts, ddl{"index " + name + " of summary table " + s.Table,
			"CREATE INDEX IF NOT EXISTS " + q(name) + " ON " + table + " (" + strings.Join(idx, ", ") + ")"})
	}
	rcols := []string{
		// COLLATE "C": keys are only ever compared for equality, and a
		// database's default linguistic collation makes every index
		// comparison a strcoll.
		`row_key text COLLATE "C" PRIMARY KEY`,
		"version bigint NOT NULL",
		"src_offset bigint NOT NULL",
		"tombstoned boolean NOT NULL",
		"kanal_group bytea",
	}
	for i, m := range s.Sums {
		rcols = append(rcols, q(m.Column)+" "+sumTypes[i])
	}
	// fillfactor: most batches rewrite state rows, and room on their page
	// keeps those updates HOT (no new index entry, pruned in place).
	stmts = append(stmts, ddl{"state table " + s.rowsTable,
		"CREATE TABLE IF NOT EXISTS " + quoteTable(s.rowsTable, '"') + " (\n\t" + strings.Join(rcols, ",\n\t") + "\n) WITH (fillfactor = 80)"})
	return stmts
}

func (p *postgres) createSummary(ctx context.Context, s *summaryRT, groupTypes, sumTypes []string) ([]string, []string, error) {
	if err := p.setup(ctx); err != nil {
		return nil, nil, err
	}
	for _, d := range pgSummaryDDL(s, groupTypes, sumTypes) {
		if _, err := p.pool.Exec(ctx, d.sql); ignoreExists(err) != nil {
			return nil, nil, fmt.Errorf("create %s: %w", d.what, err)
		}
	}
	// The table may have existed with other types: use the real ones for casts.
	rows, err := p.pool.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped`,
		quoteTable(s.Table, '"'))
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns of summary table %s: %w", s.Table, err)
	}
	types, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var c [2]string
		err := r.Scan(&c[0], &c[1])
		return c, err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns of summary table %s: %w", s.Table, err)
	}
	byName := map[string]string{}
	for _, c := range types {
		byName[c[0]] = c[1]
	}
	return s.columnTypes(byName, func(c string) string { return c })
}

type pgTxn struct {
	p     *postgres
	conn  *pgxpool.Conn
	group string
	topic string
	part  int32
	// locs are where the batch read its state rows, of every summary;
	// a loaded rowState's ref is 1 + its index here.
	locs []pgLoc
}

// pgLoc is where a batch read a state row: the ctid of the row version, and
// its xmin, the transaction that wrote that version. That transaction had
// committed when the batch read the row, so a version found later at the
// same ctid with the same xmin is the same version.
type pgLoc struct {
	tid  pgtype.TID
	xmin uint32
}

func (p *postgres) begin(ctx context.Context, group, topic string, partition int32, sums []*summaryRT, keys []string) (txn, sqloffsets.State, []map[string]*rowState, error) {
	off := sqloffsets.State{Next: -1}
	if err := p.setup(ctx); err != nil {
		return nil, off, nil, err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, off, nil, fmt.Errorf("postgres: acquire a connection: %w", p.conn.ExplainPostgres(err))
	}
	tx := &pgTxn{p: p, conn: conn, group: group, topic: topic, part: partition, locs: make([]pgLoc, 0, len(keys)*len(sums))}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Every statement of a batch reaches its rows by key or by ctid, a few
	// hundred of them. A plan cached while a table was small (or had no
	// statistics yet) may scan the whole table instead, and keep doing so once
	// it has grown: one sequential scan per batch per summary.
	b.Queue("SET LOCAL enable_seqscan = off")
	what := []string{"begin", "set enable_seqscan"}
	// A partition's offset row is created once: a process that found it
	// only locks it from then on. (Were it deleted, LockSQL would find no
	// row and fail the batch, and the retry creates it again.)
	claim := offsetKey{group, topic, partition}
	p.mu.Lock()
	claimed := p.claimed[claim]
	p.mu.Unlock()
	if !claimed {
		b.Queue(p.offsets.ClaimSQL(), group, topic, partition)
		what = append(what, "offsets table "+p.offsets.Name()+": create the partition's row")
	}
	b.Queue(p.offsets.LockSQL(), group, topic, partition)
	states := make([]map[string]*rowState, len(sums))
	load := len(keys) > 0 // none: every key of the batch is a created row
	for i, s := range sums {
		if load {
			b.Queue(pgLoadSQL(s), keys)
		} else {
			states[i] = map[string]*rowState{}
		}
	}
	err = func() error {
		br := conn.SendBatch(ctx, b)
		defer br.Close()
		for _, what := range what {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		if err := br.QueryRow().Scan(&off.Next, &off.ResetPending); err != nil {
			p.mu.Lock()
			delete(p.claimed, claim)
			p.mu.Unlock()
			return fmt.Errorf("offsets table %s: lock the partition's row: %w", p.offsets.Name(), err)
		}
		for i, s := range sums {
			if !load {
				break
			}
			rows, err := br.Query()
			if err == nil {
				states[i], err = scanStates(rows, s, &tx.locs)
			}
			if err != nil {
				return fmt.Errorf("state table %s: load state: %w", s.rowsTable, err)
			}
		}
		return br.Close()
	}()
	if err != nil {
		tx.rollback()
		return nil, off, nil, fmt.Errorf("postgres: %w", err)
	}
	return tx, off, states, nil
}

// pgLoadSQL reads the state rows of a batch's keys. No FOR UPDATE: every
// writer of a key holds the offset row lock of the key's partition (a key
// always maps to one partition), taken by an earlier statement of the same
// transaction, so this READ COMMITTED read already sees the latest state, and
// locking each row would cost a heap write (and WAL) per row. The write-back
// checks that every row version is still the one read here (see
// pgTxn.queueWrites), so even keys written outside that discipline fail the
// batch instead of being counted twice.
func pgLoadSQL(s *summaryRT) string {
	cols := []string{"ctid", "xmin", "row_key", "version", "src_offset", "tombstoned", "kanal_group"}
	for _, m := range s.Sums {
		cols = append(cols, `"`+m.Column+`"::text`)
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + quoteTable(s.rowsTable, '"') +
		" WHERE row_key = ANY($1::text[])"
}

// scanStates reads the rows of pgLoadSQL(s), appending where each was found
// to locs.
func scanStates(rows pgx.Rows, s *summaryRT, locs *[]pgLoc) (map[string]*rowState, error) {
	defer rows.Close()
	nsums := len(s.Sums)
	out := map[string]*rowState{}
	// Scanned into the same variables every row: Scan's destinations escape.
	var (
		cur     rowState
		loc     pgLoc
		version int64
		sums    = make([]*string, nsums)
	)
	dest := []any{&loc.tid, &loc.xmin, &cur.key, &version, &cur.offset, &cur.tombstoned, &cur.gkey}
	for i := range sums {
		dest = append(dest, &sums[i])
	}
	var slab []rowState // allocated 256 states at a time
	for rows.Next() {
		cur.gkey = nil
		clear(sums)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		if len(slab) == cap(slab) {
			slab = make([]rowState, 0, 256)
		}
		slab = append(slab, cur)
		st := &slab[len(slab)-1]
		st.version = uint64(version)
		*locs = append(*locs, loc)
		st.ref = len(*locs)
		if err := st.parseSums(s, sums); err != nil {
			return nil, err
		}
		out[st.key] = st
	}
	return out, rows.Err()
}

// isStateConflict reports a state insert that found a key with state: a
// unique violation, which no other statement of a batch can raise (the group
// upsert has ON CONFLICT; the offset row is only updated).
func (p *postgres) isStateConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func (t *pgTxn) rollback() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		// The pool drops a connection left inside a transaction.
		_ = t.conn.Conn().Close(ctx)
	}
	t.conn.Release()
}

func (t *pgTxn) commit(ctx context.Context, w *writes) error {
	b := &pgx.Batch{}
	var what []string // what each queued statement does, for errors
	var copies []pgCopy
	for i := range w.sums {
		var err error
		if what, copies, err = t.queueWrites(b, what, copies, &w.sums[i]); err != nil {
			t.rollback()
			return err
		}
	}
	// The new state rows go first, each summary's in one COPY: a round trip
	// more, but Postgres inserts them page by page (one WAL record per page)
	// and parses no parameter arrays.
	for _, c := range copies {
		if _, err := t.conn.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(c.data), c.sql); err != nil {
			t.rollback()
			return fmt.Errorf("postgres: %s: %w", c.what, err)
		}
	}
	if w.next >= 0 {
		q, args := t.p.offsets.Store(t.group, t.topic, t.part, w.next)
		b.Queue(q, args...)
		what = append(what, fmt.Sprintf("offsets table %s: store next offset %d", t.p.offsets.Name(), w.next))
	}
	b.Queue("COMMIT")
	what = append(what, "commit")
	// The results are read one by one only to tell which statement failed:
	// the whole pipeline is still sent at once.
	br := t.conn.SendBatch(ctx, b)
	for _, wh := range what {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			t.rollback()
			return fmt.Errorf("postgres: %s: %w", wh, err)
		}
	}
	if err := br.Close(); err != nil {
		t.rollback()
		return fmt.Errorf("postgres: write batch: %w", err)
	}
	t.conn.Release()
	// The partition's offset row is committed: later batches only lock it.
	t.p.mu.Lock()
	t.p.claimed[offsetKey{t.group, t.topic, t.part}] = true
	t.p.mu.Unlock()
	return nil
}

// pgCopy is a COPY … FROM STDIN of a batch: the statement, its rows in text
// format, and what it does (for errors).
type pgCopy struct {
	sql, what string
	data      []byte
}

// pgCopyState returns the COPY of new state rows of s: text format, one line
// per row, as pgStateArrays would pass them (NULL sums for a row that does
// not count). Each value goes through its column's input function, as the
// text parameters' casts did.
func pgCopyState(s *summaryRT, rows []*rowState) pgCopy {
	cols := []string{"row_key", "version", "src_offset", "tombstoned", "kanal_group"}
	for _, m := range s.Sums {
		cols = append(cols, `"`+m.Column+`"`)
	}
	buf := make([]byte, 0, len(rows)*(64+16*len(s.Sums)))
	for _, r := range rows {
		buf = appendCopyText(buf, r.key)
		buf = append(buf, '\t')
		buf = strconv.AppendInt(buf, int64(r.version), 10)
		buf = append(buf, '\t')
		buf = strconv.AppendInt(buf, r.offset, 10)
		if r.tombstoned {
			buf = append(buf, "\tt\t"...)
		} else {
			buf = append(buf, "\tf\t"...)
		}
		if r.gkey == nil {
			buf = append(buf, `\N`...)
		} else {
			buf = append(buf, `\\x`...) // bytea's \x, its backslash escaped
			buf = hex.AppendEncode(buf, r.gkey)
		}
		for j := range s.Sums {
			buf = append(buf, '\t')
			if r.gkey == nil {
				buf = append(buf, `\N`...)
			} else {
				buf = appendCopyText(buf, r.sums[j].String())
			}
		}
		buf = append(buf, '\n')
	}
	return pgCopy{
		sql:  "COPY " + quoteTable(s.rowsTable, '"') + " (" + strings.Join(cols, ", ") + ") FROM STDIN",
		what: fmt.Sprintf("state table %s: insert the state of %d keys that had none", s.rowsTable, len(rows)),
		data: buf,
	}
}

// appendCopyText appends v as a value of COPY's text format: backslash,
// tab, newline and carriage return escaped.
func appendCopyText(buf []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			buf = append(buf, `\\`...)
		case '\t':
			buf = append(buf, `\t`...)
		case '\n':
			buf = append(buf, `\n`...)
		case '\r':
			buf = append(buf, `\r`...)
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

// queueWrites queues a summary's writes: the state rows the batch changed
// (rows that already had state are updated in place by ctid, without an index
// lookup) and the group deltas. It appends what each queued statement does to
// what, and the COPY of the state rows new to the table (plain inserts) to
// copies.
func (t *pgTxn) queueWrites(b *pgx.Batch, what []string, copies []pgCopy, sw *summaryWrites) ([]string, []pgCopy, error) {
	s := sw.s
	q := func(n string) string { return `"` + n + `"` }
	if len(sw.rows) > 0 {
		var old, fresh []*rowState
		for _, r := range sw.rows {
			if r.version > math.MaxInt64 {
				// The version is the change's seq: no retry makes it fit.
				return what, copies, consumer.Permanent(fmt.Errorf("state table %s: key %s (offset %d): version %d does not fit a bigint",
					s.rowsTable, r.key, r.offset, r.version))
			}
			if r.ref > 0 {
				old = append(old, r)
			} else {
				fresh = append(fresh, r)
			}
		}
		table := quoteTable(s.rowsTable, '"')
		if len(old) > 0 {
			params, arrays := pgStateArrays(s, old, t.locs)
			alias := []string{"tid", "x", "k", "v", "o", "t", "g"}
			set := []string{"version = u.v", "src_offset = u.o", "tombstoned = u.t", "kanal_group = u.g"}
			for j, m := range s.Sums {
				alias = append(alias, fmt.Sprintf("s%d", j))
				set = append(set, fmt.Sprintf("%s = u.s%d::%s", q(m.Column), j, s.sumTypes[j]))
			}
			// Each row is addressed as the version the batch read: its ctid
			// finds it without an index lookup, and its xmin makes the match
			// exact. The ctid alone is not: a row deleted and inserted again
			// meanwhile can get the same ctid once VACUUM has freed it; and
			// when another writer's transaction is still open, the UPDATE
			// waits for it and then moves on to the row's newer version,
			// which Postgres releases whose TID scan recheck was a stub
			// accept without comparing the ctid again. The xmin is a plain
			// filter, evaluated again on every version the UPDATE moves to.
			//
			// A row that does not match was written by another transaction
			// meanwhile, and its state here is stale. The check must fail
			// the statement itself: the rest of the pipeline, COMMIT
			// included, runs before the client could look at a row count. A
			// failed cast is SQL's way to raise an error with a message (the
			// table name is a checked identifier). The error is not
			// permanent: the Runner retries the batch, which reads the
			// state again.
			params = append(params, int64(len(old)))
			b.Queue("WITH up AS (UPDATE "+table+" AS r SET "+strings.Join(set, ", ")+
				" FROM "+pgUnnest(arrays, alias)+" WHERE r.ctid = u.tid AND r.xmin = u.x AND r.row_key = u.k RETURNING 1)"+
				fmt.Sprintf(" SELECT CASE WHEN count(*) = $%d THEN 0 ELSE", len(params))+
				fmt.Sprintf(" ('kanal: state table %s: ' || ($%d - count(*)) || ' rows changed since the batch read them; retry')::int END FROM up", s.rowsTable, len(params)),
				params...)
			what = append(what, fmt.Sprintf("state table %s: write back the state of %d keys", s.rowsTable, len(old)))
		}
		if len(fresh) > 0 {
			// No ON CONFLICT: the batch found no state for these keys (or
			// did not read it: see Aggregator.Handle), and a key that has
			// state fails the batch (unique violation) rather than being
			// overwritten.
			copies = append(copies, pgCopyState(s, fresh))
		}
	}
	if len(sw.deltas) > 0 {
		n := len(sw.deltas)
		gkeys := make([][]byte, n)
		counts := make([]int64, n)
		groups := make([][]*string, len(s.GroupBy))
		for j := range groups {
			groups[j] = make([]*string, n)
		}
		sums := make([][]string, len(s.Sums))
		for j := range sums {
			sums[j] = make([]string, n)
		}
		for i, d := range sw.deltas {
			gkeys[i], counts[i] = d.gkey, d.count
			if d.groups != nil {
				for j := range s.GroupBy {
					groups[j][i] = pgText(d.groups[j], s.groupTypes[j])
				}
			}
			for j := range s.Sums {
				sums[j][i] = d.sums[j].String()
			}
		}
		cols := []string{"kanal_group"}
		sel := []string{"u.g"}
		alias := []string{"g"}
		params := []any{pgtype.FlatArray[[]byte](gkeys)}
		arrays := []string{"$1::bytea[]"}
		for j, g := range s.GroupBy {
			cols = append(cols, q(g.Column))
			a := fmt.Sprintf("c%d", j)
			alias = append(alias, a)
			sel = append(sel, "u."+a+"::"+s.groupTypes[j])
			params = append(params, pgtype.FlatArray[*string](groups[j]))
			arrays = append(arrays, fmt.Sprintf("$%d::text[]", len(params)))
		}
		cc := q(s.countColumn())
		cols = append(cols, cc)
		alias = append(alias, "n")
		sel = append(sel, "u.n")
		params = append(params, counts)
		arrays = append(arrays, fmt.Sprintf("$%d::bigint[]", len(params)))
		set := []string{cc + " = t." + cc + " + EXCLUDED." + cc}
		for j, m := range s.Sums {
			cols = append(cols, q(m.Column))
			a := fmt.Sprintf("s%d", j)
			alias = append(alias, a)
			sel = append(sel, "u."+a+"::"+s.sumTypes[j])
			params = append(params, sums[j])
			arrays = append(arrays, fmt.Sprintf("$%d::text[]", len(params)))
			set = append(set, q(m.Column)+" = t."+q(m.Column)+" + EXCLUDED."+q(m.Column))
		}
		table := quoteTable(s.Table, '"')
		b.Queue("INSERT INTO "+table+" AS t ("+strings.Join(cols, ", ")+") SELECT "+strings.Join(sel, ", ")+
			" FROM unnest("+strings.Join(arrays, ", ")+") WITH ORDINALITY AS u("+strings.Join(alias, ", ")+", ord) ORDER BY u.ord"+
			" ON CONFLICT (kanal_group) DO UPDATE SET "+strings.Join(set, ", "), params...)
		what = append(what, fmt.Sprintf("summary table %s: add the deltas of %d groups", s.Table, n))
		if len(sw.maybeEmpty) > 0 {
			b.Queue("DELETE FROM "+table+" WHERE kanal_group = ANY($1::bytea[]) AND "+cc+" = 0", pgtype.FlatArray[[]byte](sw.maybeEmpty))
			what = append(what, fmt.Sprintf("summary table %s: delete emptied groups", s.Table))
		}
	}
	return what, copies, nil
}

// pgUnnest is a subquery u that turns parallel arrays into rows. unnest in
// the select list streams them (ProjectSet); unnest(a, b, …) in FROM would
// first copy them into a tuplestore.
func pgUnnest(arrays, alias []string) string {
	cols := make([]string, len(arrays))
	for i := range arrays {
		cols[i] = "unnest(" + arrays[i] + ") AS " + alias[i]
	}
	return "(SELECT " + strings.Join(cols, ", ") + ") AS u"
}

// pgStateArrays returns state rows as unnest parameters and the matching typed
// placeholders. With locs (the rows' pgLocs by ref) the rows' ctids and xmins
// come first.
func pgStateArrays(s *summaryRT, rows []*rowState, locs []pgLoc) ([]any, []string) {
	n := len(rows)
	keys := make([]string, n)
	versions := make([]int64, n)
	offsets := make([]int64, n)
	tombs := make([]bool, n)
	gkeys := make([][]byte, n)
	sums := make([][]*string, len(s.Sums))
	for j := range sums {
		sums[j] = make([]*string, n)
	}
	var tids []pgtype.TID
	var xmins []uint32
	if locs != nil {
		tids = make([]pgtype.TID, n)
		xmins = make([]uint32, n)
	}
	// The sums' texts, one allocation for all of them (pointers: NULL for
	// rows that do not count).
	texts := make([]string, n*len(s.Sums))
	for i, r := range rows {
		keys[i], versions[i], offsets[i], tombs[i], gkeys[i] = r.key, int64(r.version), r.offset, r.tombstoned, r.gkey
		if locs != nil {
			l := &locs[r.ref-1]
			tids[i], xmins[i] = l.tid, l.xmin
		}
		if r.gkey != nil {
			for j := range s.Sums {
				t := &texts[i*len(s.Sums)+j]
				*t = r.sums[j].String()
				sums[j][i] = t
			}
		}
	}
	var params []any
	var arrays []string
	add := func(v any, typ string) {
		params = append(params, v)
		arrays = append(arrays, fmt.Sprintf("$%d::%s[]", len(params), typ))
	}
	// FlatArray: pgx encodes other slice types than []string and []int64
	// through reflection.
	if locs != nil {
		add(pgtype.FlatArray[pgtype.TID](tids), "tid")
		add(pgtype.FlatArray[uint32](xmins), "xid")
	}
	add(keys, "text")
	add(versions, "bigint")
	add(offsets, "bigint")
	add(pgtype.FlatArray[bool](tombs), "boolean")
	add(pgtype.FlatArray[[]byte](gkeys), "bytea")
	for j := range sums {
		add(pgtype.FlatArray[*string](sums[j]), "text")
	}
	return params, arrays
}

func (p *postgres) loadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	out, err := p.offsets.Load(ctx, group, partitions)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return out, nil
}

func (p *postgres) resetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	if err := p.offsets.Reset(ctx, group, offsets); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}
