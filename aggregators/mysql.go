package aggregators

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/sqloffsets"
)

// mysqlTarget is a MySQL or MariaDB target (go-sql-driver). A batch is one
// READ COMMITTED transaction with multi-row statements: one per table written.
type mysqlTarget struct {
	db      *sql.DB
	log     *slog.Logger
	offsets *sqloffsets.Table

	mu      sync.Mutex
	setUpOK bool
}

// maxKeyBytes is the longest row key the state table's primary key takes.
const maxKeyBytes = 3072

func newMySQL(cfg Config, log *slog.Logger) (*mysqlTarget, error) {
	mc, err := mysql.ParseDSN(cfg.Target.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: target.dsn: not a valid go-sql-driver DSN", ErrConfig)
	}
	mc.Timeout = cfg.Target.ConnectTimeout
	mc.ParseTime = false
	cs := cfg.Target.conn(mc.Addr)
	if err := cs.ApplyMySQL(mc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	cs.WarnMySQL(log, mc)
	conn, err := cs.MySQLConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: target.dsn: not a valid go-sql-driver DSN", ErrConfig)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(cfg.Target.MaxConns)
	db.SetMaxIdleConns(cfg.Target.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return &mysqlTarget{db: db, log: log, offsets: sqloffsets.New(sqloffsets.MySQL, db, cfg.OffsetsTable)}, nil
}

func (m *mysqlTarget) close()            { m.db.Close() }
func (m *mysqlTarget) dialect() *dialect { return &myTypes }

func (m *mysqlTarget) ping(ctx context.Context) error { return m.db.PingContext(ctx) }

func (m *mysqlTarget) setup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.setUpOK {
		return nil
	}
	if err := m.offsets.Setup(ctx); err != nil {
		return fmt.Errorf("aggregators: mysql: %w", err)
	}
	m.setUpOK = true
	return nil
}

// mySummaryDDL returns the CREATE statements of a summary and its state table.
func mySummaryDDL(s *summaryRT, groupTypes, sumTypes []string) []ddl {
	q := func(n string) string { return "`" + n + "`" }
	cols := []string{"kanal_group BINARY(16) NOT NULL PRIMARY KEY"}
	var idx []string
	idxBytes := 0
	for i, g := range s.GroupBy {
		cols = append(cols, q(g.Column)+" "+groupTypes[i]+" NULL")
		idx = append(idx, q(g.Column))
		t := strings.ToUpper(groupTypes[i])
		switch {
		case strings.HasPrefix(t, "VARCHAR") || strings.HasPrefix(t, "VARBINARY") || strings.HasPrefix(t, "CHAR"):
			n, _ := strconv.Atoi(strings.Trim(t[strings.Index(t+"(", "("):], "()"))
			idxBytes += 4*n + 2
		case strings.Contains(t, "TEXT") || strings.Contains(t, "BLOB"):
			idxBytes += 1 << 20
		default:
			idxBytes += 32
		}
	}
	cc := q(s.countColumn())
	cols = append(cols, cc+" BIGINT NOT NULL")
	for i, m := range s.Sums {
		cols = append(cols, q(m.Column)+" "+sumTypes[i]+" NOT NULL")
	}
	if len(idx) > 0 && idxBytes <= 3072 {
		cols = append(cols, "KEY kanal_groups ("+strings.Join(idx, ", ")+")")
	}
	stmts := []ddl{{"summary table " + s.Table, "CREATE TABLE IF NOT EXISTS " + quoteTable(s.Table, '`') + " (\n\t" + strings.Join(cols, ",\n\t") +
		"\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"}}
	rcols := []string{
		"row_key VARBINARY(3072) NOT NULL PRIMARY KEY",
		"version BIGINT UNSIGNED NOT NULL",
		"src_offset BIGINT NOT NULL",
		"tombstoned BOOLEAN NOT NULL",
		"kanal_group BINARY(16) NULL",
	}
	for i, m := range s.Sums {
		rcols = append(rcols, q(m.Column)+" "+sumTypes[i]+" NULL")
	}
	stmts = append(stmts, ddl{"state table " + s.rowsTable, "CREATE TABLE IF NOT EXISTS " + quoteTable(s.rowsTable, '`') + " (\n\t" + strings.Join(rcols, ",\n\t") +
		"\n) ENGINE=InnoDB"})
	return stmts
}

func (m *mysqlTarget) createSummary(ctx context.Context, s *summaryRT, groupTypes, sumTypes []string) ([]string, []string, error) {
	if err := m.setup(ctx); err != nil {
		return nil, nil, err
	}
	for _, d := range mySummaryDDL(s, groupTypes, sumTypes) {
		if _, err := m.db.ExecContext(ctx, d.sql); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", d.what, err)
		}
	}
	schema, table := "", s.Table
	if i := strings.IndexByte(s.Table, '.'); i >= 0 {
		schema, table = s.Table[:i], s.Table[i+1:]
	}
	rows, err := m.db.QueryContext(ctx, `SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ?`, schema, table)
	if err != nil {
		return nil, nil, fmt.Errorf("read the columns of summary table %s: %w", s.Table, err)
	}
	defer rows.Close()
	byName := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, nil, fmt.Errorf("read the columns of summary table %s: %w", s.Table, err)
		}
		byName[strings.ToLower(name)] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("read the columns of summary table %s: %w", s.Table, err)
	}
	// MySQL's column names are case-insensitive.
	return s.columnTypes(byName, strings.ToLower)
}

type myTxn struct {
	m     *mysqlTarget
	tx    *sql.Tx
	group string
	topic string
	part  int32
}

func (m *mysqlTarget) begin(ctx context.Context, group, topic string, partition int32, sums []*summaryRT, keys []string) (txn, sqloffsets.State, []map[string]*rowState, error) {
	off := sqloffsets.State{Next: -1}
	if err := m.setup(ctx); err != nil {
		return nil, off, nil, err
	}
	for _, k := range keys {
		if len(k) > maxKeyBytes && len(sums) > 0 {
			// The state tables cannot hold it, however often the batch is
			// retried.
			tables := make([]string, len(sums))
			for i, s := range sums {
				tables[i] = s.rowsTable
			}
			what := "state table "
			if len(tables) > 1 {
				what = "state tables "
			}
			return nil, off, nil, consumer.Permanent(fmt.Errorf("%s%s: key %.60s… is %d bytes, longer than the %d bytes their row_key holds",
				what, strings.Join(tables, ", "), k, len(k), maxKeyBytes))
		}
	}
	// READ COMMITTED: locking reads of absent keys take no gap locks, so
	// partitions writing the same tables do not block each other.
	tx, err := m.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, off, nil, fmt.Errorf("mysql: begin: %w", err)
	}
	t := &myTxn{m: m, tx: tx, group: group, topic: topic, part: partition}
	fail := func(what string, err error) (txn, sqloffsets.State, []map[string]*rowState, error) {
		t.rollback()
		return nil, off, nil, fmt.Errorf("mysql: %s: %w", what, err)
	}
	if off, err = m.offsets.Lock(ctx, tx, group, topic, partition); err != nil {
		t.rollback()
		return nil, off, nil, fmt.Errorf("mysql: %w", err)
	}
	states := make([]map[string]*rowState, len(sums))
	for i, s := range sums {
		states[i] = map[string]*rowState{}
		cols := []string{"row_key", "version", "src_offset", "tombstoned", "kanal_group"}
		for _, c := range s.Sums {
			cols = append(cols, "CAST(`"+c.Column+"` AS CHAR)")
		}
		for start := 0; start < len(keys); start += 1000 {
			chunk := keys[start:min(len(keys), start+1000)]
			args := make([]any, len(chunk))
			for j, k := range chunk {
				args[j] = []byte(k)
			}
			rows, err := tx.QueryContext(ctx, "SELECT "+strings.Join(cols, ", ")+" FROM "+quoteTable(s.rowsTable, '`')+
				" WHERE row_key IN ("+placeholders(len(chunk))+") FOR UPDATE", args...)
			if err != nil {
				return fail("state table "+s.rowsTable+": load state", err)
			}
			got, err := scanMyStates(rows, s)
			rows.Close()
			if err != nil {
				return fail("state table "+s.rowsTable+": load state", err)
			}
			for k, v := range got {
				states[i][k] = v
			}
		}
	}
	return t, off, states, nil
}

func scanMyStates(rows *sql.Rows, s *summaryRT) (map[string]*rowState, error) {
	nsums := len(s.Sums)
	out := map[string]*rowState{}
	for rows.Next() {
		st := &rowState{}
		var key []byte
		sums := make([]*string, nsums)
		dest := []any{&key, &st.version, &st.offset, &st.tombstoned, &st.gkey}
		for i := range sums {
			dest = append(dest, &sums[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		st.key = string(key)
		st.ref = 1 // the row exists: written back by an upsert
		if err := st.parseSums(s, sums); err != nil {
			return nil, err
		}
		out[st.key] = st
	}
	return out, rows.Err()
}

func placeholders(n int) string {
	if n == 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

func (t *myTxn) rollback() { _ = t.tx.Rollback() }

// isStateConflict reports a state insert that found a key with state: a
// duplicate key, which no other statement of a batch can raise (the group
// and state upserts have ON DUPLICATE KEY UPDATE; the offset row is only
// updated).
func (m *mysqlTarget) isStateConflict(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// maxParams keeps multi-row statements below the protocol's 65,535 placeholders.
const maxParams = 60000

func (t *myTxn) commit(ctx context.Context, w *writes) error {
	err := func() error {
		for _, sw := range w.sums {
			if err := t.writeSummary(ctx, &sw); err != nil {
				return err
			}
		}
		if w.next >= 0 {
			if err := t.m.offsets.StoreNext(ctx, t.tx, t.group, t.topic, t.part, w.next); err != nil {
				return err
			}
		}
		if err := t.tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}()
	if err != nil {
		t.rollback()
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}

func (t *myTxn) writeSummary(ctx context.Context, sw *summaryWrites) error {
	s := sw.s
	q := func(n string) string { return "`" + n + "`" }
	// Rows that had state are upserted; the others are plain inserts, which
	// fail (duplicate key) for a key that has state after all: the batch did
	// not read it (see Aggregator.Handle), or the key got state meanwhile.
	var old, fresh []*rowState
	for _, r := range sw.rows {
		if r.ref > 0 {
			old = append(old, r)
		} else {
			fresh = append(fresh, r)
		}
	}
	for _, rows := range [][]*rowState{old, fresh} {
		if len(rows) == 0 {
			continue
		}
		cols := []string{"row_key", "version", "src_offset", "tombstoned", "kanal_group"}
		set := []string{"version = VALUES(version)", "src_offset = VALUES(src_offset)", "tombstoned = VALUES(tombstoned)", "kanal_group = VALUES(kanal_group)"}
		for _, m := range s.Sums {
			cols = append(cols, q(m.Column))
			set = append(set, q(m.Column)+" = VALUES("+q(m.Column)+")")
		}
		if rows[0].ref == 0 {
			set = nil
		}
		err := t.upsertRows(ctx, s.rowsTable, cols, set, len(rows), "keys", func(args []any, i int) []any {
			r := rows[i]
			var gkey any
			if r.gkey != nil {
				gkey = r.gkey
			}
			args = append(args, []byte(r.key), r.version, r.offset, r.tombstoned, gkey)
			for j := range s.Sums {
				if r.gkey != nil {
					args = append(args, r.sums[j].String())
				} else {
					args = append(args, nil)
				}
			}
			return args
		})
		if err != nil {
			return fmt.Errorf("state table %s: write the state of %w", s.rowsTable, err)
		}
	}
	if len(sw.deltas) > 0 {
		cc := q(s.countColumn())
		cols := []string{"kanal_group"}
		for _, g := range s.GroupBy {
			cols = append(cols, q(g.Column))
		}
		cols = append(cols, cc)
		set := []string{cc + " = " + cc + " + VALUES(" + cc + ")"}
		for _, m := range s.Sums {
			cols = append(cols, q(m.Column))
			set = append(set, q(m.Column)+" = "+q(m.Column)+" + VALUES("+q(m.Column)+")")
		}
		err := t.upsertRows(ctx, s.Table, cols, set, len(sw.deltas), "groups", func(args []any, i int) []any {
			d := sw.deltas[i]
			args = append(args, d.gkey)
			for j := range s.GroupBy {
				if d.groups == nil {
					args = append(args, nil)
				} else {
					args = append(args, mysqlValue(d.groups[j], s.groupTypes[j]))
				}
			}
			args = append(args, d.count)
			for j := range s.Sums {
				args = append(args, d.sums[j].String())
			}
			return args
		})
		if err != nil {
			return fmt.Errorf("summary table %s: add the deltas of %w", s.Table, err)
		}
		for start := 0; start < len(sw.maybeEmpty); start += maxParams {
			chunk := sw.maybeEmpty[start:min(len(sw.maybeEmpty), start+maxParams)]
			args := make([]any, len(chunk))
			for i, g := range chunk {
				args[i] = g
			}
			if _, err := t.tx.ExecContext(ctx, "DELETE FROM "+quoteTable(s.Table, '`')+" WHERE kanal_group IN ("+
				placeholders(len(chunk))+") AND "+cc+" = 0", args...); err != nil {
				return fmt.Errorf("summary table %s: delete emptied groups: %w", s.Table, err)
			}
		}
	}
	return nil
}

// upsertRows writes n rows into table with multi-row INSERT … ON DUPLICATE KEY
// UPDATE set statements (plain INSERTs when set is empty) of at most maxParams
// parameters; rowArgs appends row i's values, in cols order. Its error starts
// with how many rows the failed statement wrote, named by unit ("12 keys: …").
func (t *myTxn) upsertRows(ctx context.Context, table string, cols, set []string, n int, unit string, rowArgs func(args []any, i int) []any) error {
	per := len(cols)
	rowPH := "(" + placeholders(per) + ")"
	for start := 0; start < n; start += maxParams / per {
		end := min(n, start+maxParams/per)
		args := make([]any, 0, (end-start)*per)
		phs := make([]string, 0, end-start)
		for i := start; i < end; i++ {
			phs = append(phs, rowPH)
			args = rowArgs(args, i)
		}
		q := "INSERT INTO " + quoteTable(table, '`') + " (" + strings.Join(cols, ", ") + ") VALUES " + strings.Join(phs, ", ")
		if len(set) > 0 {
			q += " ON DUPLICATE KEY UPDATE " + strings.Join(set, ", ")
		}
		if _, err := t.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("%d %s: %w", end-start, unit, err)
		}
	}
	return nil
}

func (m *mysqlTarget) loadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	out, err := m.offsets.Load(ctx, group, partitions)
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	return out, nil
}

func (m *mysqlTarget) resetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	if err := m.offsets.Reset(ctx, group, offsets); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}
