package producer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/kanal-cdc/kanal/schemas"
)

// A backfill's chunk is emitted once the stream reaches the binlog position of
// the chunk's snapshot (snapshot.go). That position must be at or after every
// transaction the snapshot sees, and every transaction before the chunk's
// window opened (the stream position S of chunkReq.boundary) must be visible to
// the snapshot. The two ways to get such a position, source.snapshot_watermark:
//
//   - snapshot-position (read-only): MariaDB and Percona Server report
//     binlog_snapshot_file/position, the binlog position of exactly the snapshot
//     START TRANSACTION WITH CONSISTENT SNAPSHOT took. The reader retakes a
//     snapshot older than S.
//
//   - table (MySQL, which has no such status): before the snapshot, the reader
//     writes and commits one row of source.signal_table. Its transaction W is in
//     the binlog after S, and the server commits transactions in the storage
//     engine in binlog order (MySQL with binlog_order_commits=ON, which is
//     checked; MariaDB always), so when W's COMMIT returns, every transaction up
//     to S is committed and visible to a snapshot started afterwards. The reader
//     then starts the snapshot and reads the end of the binlog (SHOW MASTER
//     STATUS; SHOW BINARY LOG STATUS on MySQL 8.4+) as the chunk's position Q: a
//     transaction the snapshot sees committed in the engine before the snapshot
//     began, so it was written to the binlog before, below Q. Transactions
//     between S and Q that the snapshot may or may not see change keys the
//     session tracks since the window opened: their rows are left out of the
//     chunk, their changes carry them.
//
// The watermark table's own changes are never captured (captureFilter).

// Values of source.snapshot_watermark.
const (
	watermarkAuto     = "auto"
	watermarkPosition = "snapshot-position"
	watermarkTable    = "table"
)

// errWatermark is wrapped by failures to set up or write the watermark table:
// they fail a backfill (and the producer's start), naming the table and what to
// grant or change.
var errWatermark = errors.New("backfill watermark table")

// chunkSnapshot starts a chunk's consistent snapshot (a REPEATABLE READ
// transaction WITH CONSISTENT SNAPSHOT, READ ONLY, on conn) and returns the
// chunk's binlog position: every transaction the snapshot sees is before it.
// The caller rolls the transaction back.
type chunkSnapshot interface {
	begin(ctx context.Context, conn *sql.Conn) (schemas.Position, error)
}

// watermarks picks a reader's chunkSnapshot on first use, from the source's
// settings and what the server offers.
type watermarks struct {
	cfg  SourceConfig
	mark chunkSnapshot
}

func newWatermarks(cfg *SourceConfig) *watermarks { return &watermarks{cfg: *cfg} }

// begin starts the chunk's snapshot and returns its position (see chunkSnapshot).
func (w *watermarks) begin(ctx context.Context, conn *sql.Conn) (schemas.Position, error) {
	if w.mark == nil {
		has, err := hasSnapshotPosition(ctx, conn)
		if err != nil {
			return schemas.Position{}, err
		}
		mode, err := watermarkMode(&w.cfg, has)
		if err != nil {
			return schemas.Position{}, err
		}
		if mode == watermarkPosition {
			w.mark = snapshotPosition{}
		} else {
			t, err := prepareSignalTable(ctx, conn, &w.cfg)
			if err != nil {
				return schemas.Position{}, err
			}
			w.mark = t
		}
	}
	return w.mark.begin(ctx, conn)
}

// hasSnapshotPosition reports whether the server has the binlog_snapshot_file
// status (MariaDB, Percona Server; not MySQL).
func hasSnapshotPosition(ctx context.Context, q queryer) (bool, error) {
	rows, err := q.QueryContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_file'")
	if err != nil {
		return false, err
	}
	has := rows.Next()
	return has, errors.Join(rows.Err(), rows.Close())
}

// watermarkMode decides how chunks learn their snapshot's position, given
// whether the server reports binlog_snapshot_file/position. Its error says which
// settings make backfills work.
func watermarkMode(cfg *SourceConfig, hasSnapshotPos bool) (string, error) {
	switch {
	case cfg.SnapshotWatermark == watermarkTable:
		return watermarkTable, nil
	case hasSnapshotPos:
		return watermarkPosition, nil
	case cfg.SnapshotWatermark == watermarkAuto && cfg.SignalTable != "":
		return watermarkTable, nil
	case cfg.SnapshotWatermark == watermarkPosition:
		return "", fmt.Errorf("%w: source.snapshot_watermark is snapshot-position, but the server has no binlog_snapshot_file/binlog_snapshot_position "+
			"status (MariaDB and Percona Server have it; MySQL does not): set source.snapshot_watermark: auto or table and source.signal_table "+
			"(e.g. kanal.kanal_watermarks, a table the producer creates and writes one row of per chunk; docs/snapshots.md)", errSnapshotUnsupported)
	}
	return "", fmt.Errorf("%w: the server has no binlog_snapshot_file/binlog_snapshot_position status (MariaDB and Percona Server have it; "+
		"MySQL does not), so backfills need a watermark table: set source.signal_table (e.g. kanal.kanal_watermarks) and grant the producer's user "+
		"SELECT, INSERT, UPDATE and CREATE on that table's database (docs/snapshots.md)", errSnapshotUnsupported)
}

// checkBackfillSupport refuses, before anything is asked of the producer, a
// backfill that the source's settings cannot run.
func checkBackfillSupport(ctx context.Context, db *sql.DB, cfg *SourceConfig) error {
	has, err := hasSnapshotPosition(ctx, db)
	if err != nil {
		return fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	_, err = watermarkMode(cfg, has)
	return err
}

// checkWatermark runs at the producer's start. With the table watermark it
// checks the server's commit order, creates the table if missing and writes the
// source's row once, so that a missing privilege stops the start with an error
// naming it rather than every backfill later. Without any way to backfill it
// refuses only an initial snapshot (source.start: snapshot on a new deployment):
// other backfills fail when asked for, and streaming is unaffected.
func checkWatermark(ctx context.Context, db *sql.DB, cfg *SourceConfig, initialSnapshot bool) error {
	if cfg.SnapshotWatermark != watermarkTable && cfg.SignalTable == "" && !initialSnapshot {
		return nil // never the table; a server without the snapshot position fails backfills when asked
	}
	has, err := hasSnapshotPosition(ctx, db)
	if err != nil {
		return fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	mode, err := watermarkMode(cfg, has)
	switch {
	case err != nil && initialSnapshot:
		return fmt.Errorf("%w: source.start is snapshot: %w", ErrServerConfig, err)
	case err != nil || mode != watermarkTable:
		return nil
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	defer conn.Close()
	t, err := prepareSignalTable(ctx, conn, cfg)
	if err == nil {
		err = t.write(ctx, conn)
	}
	if errors.Is(err, errWatermark) {
		return fmt.Errorf("%w: %w", ErrServerConfig, err)
	}
	return err
}

// snapshotPosition reads MariaDB's binlog position of the consistent snapshot.
type snapshotPosition struct{}

func (snapshotPosition) begin(ctx context.Context, conn *sql.Conn) (schemas.Position, error) {
	if err := startSnapshot(ctx, conn); err != nil {
		return schemas.Position{}, err
	}
	// MariaDB names the binlog position of the consistent snapshot: every
	// transaction before it is visible, none after it.
	var file, pos string
	rows, err := conn.QueryContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return schemas.Position{}, err
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return schemas.Position{}, err
		}
		switch strings.ToLower(k) {
		case "binlog_snapshot_file":
			file = v
		case "binlog_snapshot_position":
			pos = v
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return schemas.Position{}, err
	}
	p, perr := strconv.ParseUint(pos, 10, 32)
	if file == "" || perr != nil {
		return schemas.Position{}, fmt.Errorf("%w: the server has no binlog_snapshot_file/binlog_snapshot_position status", errSnapshotUnsupported)
	}
	return schemas.Position{File: file, Pos: uint32(p)}, nil
}

func startSnapshot(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
		return err
	}
	_, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
	return err
}

// tableWatermark commits a row of the signal table before each snapshot and
// takes the end of the binlog after it began (see the top of this file).
type tableWatermark struct {
	table  string // db.table, for errors
	user   string
	upsert string
	status string // the statement that reports the binlog's end on this server
}

func (t *tableWatermark) begin(ctx context.Context, conn *sql.Conn) (schemas.Position, error) {
	if err := t.write(ctx, conn); err != nil {
		return schemas.Position{}, err
	}
	if err := startSnapshot(ctx, conn); err != nil {
		return schemas.Position{}, err
	}
	if t.status == "" {
		if _, err := binlogStatusBy(ctx, conn, showMasterStatus); err == nil {
			t.status = showMasterStatus
		} else {
			t.status = showBinaryLogStatus
		}
	}
	return binlogStatusBy(ctx, conn, t.status)
}

// write commits the source's watermark row (autocommit: one transaction).
func (t *tableWatermark) write(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, t.upsert); err != nil {
		return signalTableError(t.table, t.user, "INSERT and UPDATE", err)
	}
	return nil
}

// signalTableDDL creates the watermark table: one row per source. InnoDB:
// the ordering argument needs a transactional engine.
const signalTableDDL = `CREATE TABLE IF NOT EXISTS %s (
  source_name VARCHAR(200) CHARACTER SET ascii NOT NULL PRIMARY KEY COMMENT 'source.name of a kanal producer',
  marks BIGINT UNSIGNED NOT NULL COMMENT 'watermarks written: one per backfill chunk',
  updated_at DATETIME(6) NOT NULL COMMENT 'UTC'
) ENGINE=InnoDB COMMENT='kanal backfill watermarks (source.signal_table); never captured'`

// prepareSignalTable checks that the server commits in binlog order, creates the
// watermark table if it is missing and returns the watermark that writes it.
func prepareSignalTable(ctx context.Context, conn *sql.Conn, cfg *SourceConfig) (*tableWatermark, error) {
	var version, user string
	if err := conn.QueryRowContext(ctx, "SELECT @@version, CURRENT_USER()").Scan(&version, &user); err != nil {
		return nil, err
	}
	flavor := "mysql"
	if strings.Contains(strings.ToLower(version), "mariadb") {
		flavor = "mariadb"
	}
	if flavor == "mysql" {
		var v sql.NullString
		err := conn.QueryRowContext(ctx, "SELECT @@GLOBAL.binlog_order_commits").Scan(&v)
		if err := checkOrderCommits(v.String, err); err != nil {
			return nil, err
		}
	}
	db, tbl, _ := strings.Cut(cfg.SignalTable, ".")
	name := quoteIdent(db) + "." + quoteIdent(tbl)
	var engine sql.NullString
	err := conn.QueryRowContext(ctx, "SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?", db, tbl).Scan(&engine)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Missing (or invisible to a user without any privilege on it).
		var n int
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", db).Scan(&n); err != nil {
			return nil, err
		}
		if n == 0 {
			if _, err := conn.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db)); err != nil {
				return nil, signalTableError(cfg.SignalTable, user, "CREATE (to create the database "+db+")", err)
			}
		}
		if _, err := conn.ExecContext(ctx, fmt.Sprintf(signalTableDDL, name)); err != nil {
			return nil, signalTableError(cfg.SignalTable, user, "CREATE", err)
		}
	case err != nil:
		return nil, err
	case !strings.EqualFold(engine.String, "InnoDB"):
		return nil, fmt.Errorf("%w: source.signal_table %s uses the %s engine; the watermark needs a transactional table: ALTER TABLE %s ENGINE=InnoDB",
			errWatermark, cfg.SignalTable, engine.String, name)
	}
	return &tableWatermark{
		table: cfg.SignalTable,
		user:  user,
		// The source name is [A-Za-z0-9._-] (Validate): a literal is safe.
		upsert: "INSERT INTO " + name + " (source_name, marks, updated_at) VALUES ('" + cfg.Name + "', 1, UTC_TIMESTAMP(6)) " +
			"ON DUPLICATE KEY UPDATE marks = marks + 1, updated_at = UTC_TIMESTAMP(6)",
	}, nil
}

// checkOrderCommits refuses a MySQL server that may commit transactions in the
// storage engine in another order than in the binlog (binlog_order_commits=OFF):
// then a transaction before the chunk's window could still be invisible when the
// watermark's commit returns. value and err are what SELECT
// @@GLOBAL.binlog_order_commits gave.
func checkOrderCommits(value string, err error) error {
	if err != nil {
		return fmt.Errorf("%w: read @@GLOBAL.binlog_order_commits: %w", errWatermark, err)
	}
	if !is("1", "ON")(value) {
		return fmt.Errorf("%w: the server has binlog_order_commits=%s; the table watermark (source.snapshot_watermark) needs ON, so that "+
			"transactions become visible in binlog order. Fix: SET GLOBAL binlog_order_commits = ON, and in my.cnf [mysqld]: binlog_order_commits = ON",
			errWatermark, shown(value))
	}
	return nil
}

// signalTableError names the table and the privilege for the server's refusals;
// other errors (a lost connection) pass unchanged.
func signalTableError(table, user, privilege string, err error) error {
	var me *gomysql.MySQLError
	if !errors.As(err, &me) {
		return err
	}
	db, _, _ := strings.Cut(table, ".")
	account := user
	if at := strings.LastIndexByte(user, '@'); at >= 0 {
		account = "'" + user[:at] + "'@'" + user[at+1:] + "'"
	}
	switch me.Number {
	case 1142, 1044, 1227, 1143: // command denied, access denied to the database, …
		return fmt.Errorf("%w: source.signal_table %s: user %s lacks %s on it; the table watermark writes one row there per backfill chunk: "+
			"GRANT SELECT, INSERT, UPDATE, CREATE ON %s.* TO %s: %w", errWatermark, table, user, privilege, quoteIdent(db), account, err)
	case 1290, 1836: // read-only server
		return fmt.Errorf("%w: source.signal_table %s: the server is read-only (a replica?), and the table watermark writes to it: "+
			"point source.addr at the primary, or use source.snapshot_watermark: snapshot-position on MariaDB: %w", errWatermark, table, err)
	case 1146, 1049: // no such table or database (dropped meanwhile)
		return fmt.Errorf("%w: source.signal_table %s: %w (the producer creates it when it starts)", errWatermark, table, err)
	}
	return err // a lock wait, a deadlock, …: the session retries
}

// checkSignalTable checks source.signal_table's form: db.table, plain names.
func checkSignalTable(name string) error {
	db, tbl, ok := strings.Cut(name, ".")
	switch {
	case !ok || db == "" || tbl == "" || strings.Contains(tbl, "."):
		return fmt.Errorf("%q is not db.table", name)
	case strings.ContainsAny(name, "*?[]`'\"\\ \t\n"):
		return fmt.Errorf("%q: a plain db.table name, without patterns, quotes or spaces", name)
	case len(db) > 64 || len(tbl) > 64:
		return fmt.Errorf("%q: names are at most 64 characters", name)
	}
	switch strings.ToLower(db) {
	case "mysql", "information_schema", "performance_schema", "sys":
		return fmt.Errorf("%q: not in the server's own database %s", name, db)
	}
	return nil
}
