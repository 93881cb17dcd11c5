// Package sqloffsets is the offsets table of kanal's SQL sinks (the
// aggregators and sqlmirror): the consumer offsets a sink keeps in its target
// database and writes in the same transaction as the data, so that a batch is
// applied exactly once. One design for every sink, in the Postgres and the
// MySQL/MariaDB dialect:
//
//	consumer_group   the consumer group
//	topic            the Kafka topic
//	kafka_partition  the partition
//	next_offset      the offset of the next record to apply; -1 before the first
//	reset_pending    set by `kanal offsets reset`, cleared when a member loads the
//	                 offsets: until then batches leave the reset offset in place
//	updated_at       when next_offset last moved
//	PRIMARY KEY (consumer_group, topic, kafka_partition)
//
// Sinks of one database may share the table (the default name is the same for
// all): their rows differ by group. A table created by sqlmirror before this
// design (columns grp, topic, part, next_offset) is migrated by Setup: its
// columns are renamed and the two new ones added, keeping its rows.
package sqloffsets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Dialect is a target database's SQL dialect.
type Dialect int

// The dialects.
const (
	Postgres Dialect = iota + 1 // PostgreSQL
	MySQL                       // MySQL or MariaDB
)

// State is a partition's row as a batch found it.
type State struct {
	// Next is the stored next offset, -1 when none is stored yet.
	Next int64
	// ResetPending: `kanal offsets reset` moved Next and no member has loaded it
	// yet; a batch must not store its own next offset over it.
	ResetPending bool
}

// Table is an offsets table in one database.
type Table struct {
	d    Dialect
	db   *sql.DB
	name string // as configured, for errors
	q    string // quoted
}

// New returns the offsets table name ("table" or "schema.table", a plain
// identifier the caller validated) in db. It does not connect.
func New(d Dialect, db *sql.DB, name string) *Table {
	return &Table{d: d, db: db, name: name, q: quote(d, name)}
}

// Name returns the table name as configured.
func (t *Table) Name() string { return t.name }

// quote quotes "table" or "schema.table".
func quote(d Dialect, name string) string {
	q := `"`
	if d == MySQL {
		q = "`"
	}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = q + strings.ReplaceAll(p, q, q+q) + q
	}
	return strings.Join(parts, ".")
}

// p is the i-th (1-based) placeholder.
func (t *Table) p(i int) string {
	if t.d == MySQL {
		return "?"
	}
	return fmt.Sprintf("$%d", i)
}

// CreateSQL creates the table if it does not exist.
func (t *Table) CreateSQL() string {
	if t.d == MySQL {
		return `CREATE TABLE IF NOT EXISTS ` + t.q + ` (
	consumer_group  VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	topic           VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	kafka_partition INT          NOT NULL,
	next_offset     BIGINT       NOT NULL,
	reset_pending   BOOLEAN      NOT NULL DEFAULT FALSE,
	updated_at      TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
	PRIMARY KEY (consumer_group, topic, kafka_partition)
) ENGINE=InnoDB`
	}
	return `CREATE TABLE IF NOT EXISTS ` + t.q + ` (
	consumer_group  text        NOT NULL,
	topic           text        NOT NULL,
	kafka_partition integer     NOT NULL,
	next_offset     bigint      NOT NULL,
	reset_pending   boolean     NOT NULL DEFAULT false,
	updated_at      timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (consumer_group, topic, kafka_partition)
)`
}

// ClaimSQL inserts a partition's row with next_offset -1 unless it exists, so
// that LockSQL always finds a row to lock (a locking read of a missing row locks
// nothing under READ COMMITTED). Its parameters are group, topic, partition.
func (t *Table) ClaimSQL() string {
	if t.d == MySQL {
		return `INSERT INTO ` + t.q + ` (consumer_group, topic, kafka_partition, next_offset)
		VALUES (?, ?, ?, -1) ON DUPLICATE KEY UPDATE next_offset = next_offset`
	}
	return `INSERT INTO ` + t.q + ` (consumer_group, topic, kafka_partition, next_offset) VALUES ($1, $2, $3, -1)
		ON CONFLICT DO NOTHING`
}

// LockSQL reads and locks a partition's row until the transaction ends: every
// writer of the partition's data holds it. Its parameters are group, topic,
// partition; it returns next_offset, reset_pending.
func (t *Table) LockSQL() string {
	return `SELECT next_offset, reset_pending FROM ` + t.q + `
		WHERE consumer_group = ` + t.p(1) + ` AND topic = ` + t.p(2) + ` AND kafka_partition = ` + t.p(3) + ` FOR UPDATE`
}

// Store returns the statement that stores a partition's next offset, and its
// arguments, for a transaction that locked the row (LockSQL) and found no
// reset pending.
func (t *Table) Store(group, topic string, partition int32, next int64) (string, []any) {
	if t.d == MySQL {
		return `UPDATE ` + t.q + ` SET next_offset = ?, updated_at = CURRENT_TIMESTAMP(6)
			WHERE consumer_group = ? AND topic = ? AND kafka_partition = ?`, []any{next, group, topic, partition}
	}
	return `UPDATE ` + t.q + ` SET next_offset = $4, updated_at = now()
			WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = $3`, []any{group, topic, partition, next}
}

// resetSQL sets a partition's next offset and marks the reset pending; its
// parameters are group, topic, partition, next.
func (t *Table) resetSQL() string {
	if t.d == MySQL {
		return `INSERT INTO ` + t.q + ` (consumer_group, topic, kafka_partition, next_offset, reset_pending)
				VALUES (?, ?, ?, ?, TRUE) ON DUPLICATE KEY UPDATE next_offset = VALUES(next_offset), reset_pending = TRUE,
				updated_at = CURRENT_TIMESTAMP(6)`
	}
	return `INSERT INTO ` + t.q + ` (consumer_group, topic, kafka_partition, next_offset, reset_pending)
					VALUES ($1, $2, $3, $4, true)
					ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE
					SET next_offset = EXCLUDED.next_offset, reset_pending = true, updated_at = now()`
}

// Execer runs statements in a transaction (*sql.Tx).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Lock claims and locks a partition's row in tx and returns its state (see
// ClaimSQL and LockSQL).
func (t *Table) Lock(ctx context.Context, tx Execer, group, topic string, partition int32) (State, error) {
	st := State{Next: -1}
	if _, err := tx.ExecContext(ctx, t.ClaimSQL(), group, topic, partition); err != nil {
		return st, fmt.Errorf("offsets table %s: create the partition's row: %w", t.name, err)
	}
	if err := tx.QueryRowContext(ctx, t.LockSQL(), group, topic, partition).Scan(&st.Next, &st.ResetPending); err != nil {
		return st, fmt.Errorf("offsets table %s: lock the partition's row: %w", t.name, err)
	}
	return st, nil
}

// StoreNext stores a partition's next offset in tx, which holds its row's lock.
func (t *Table) StoreNext(ctx context.Context, tx Execer, group, topic string, partition int32, next int64) error {
	q, args := t.Store(group, topic, partition, next)
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("offsets table %s: store next offset %d: %w", t.name, next, err)
	}
	return nil
}

// Load returns the next offsets stored for group of the given partitions
// (partitions without one are left out) and clears their pending resets: from
// now on batches store their offsets again.
func (t *Table) Load(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	out := map[string]map[int32]int64{}
	err := t.inTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted}, func(tx *sql.Tx) error {
		for topic, parts := range partitions {
			if len(parts) == 0 {
				continue
			}
			if err := t.loadTopic(ctx, tx, group, topic, parts, out); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("offsets table %s: load the offsets of %s: %w", t.name, group, err)
	}
	return out, nil
}

// loadTopic adds the stored offsets of a topic's partitions to out.
func (t *Table) loadTopic(ctx context.Context, tx *sql.Tx, group, topic string, parts []int32, out map[string]map[int32]int64) error {
	var rows *sql.Rows
	var err error
	if t.d == MySQL {
		args := []any{group, topic}
		for _, p := range parts {
			args = append(args, p)
		}
		in := strings.Repeat("?, ", len(parts)-1) + "?"
		rows, err = tx.QueryContext(ctx, `SELECT kafka_partition, next_offset FROM `+t.q+`
			WHERE consumer_group = ? AND topic = ? AND kafka_partition IN (`+in+`) FOR UPDATE`, args...)
		if err == nil {
			err = collect(rows, topic, out)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, `UPDATE `+t.q+` SET reset_pending = FALSE
				WHERE consumer_group = ? AND topic = ? AND kafka_partition IN (`+in+`)`, args...)
		}
		return err
	}
	rows, err = tx.QueryContext(ctx, `UPDATE `+t.q+` SET reset_pending = false
		WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = ANY($3::integer[])
		RETURNING kafka_partition, next_offset`, group, topic, parts)
	if err != nil {
		return err
	}
	return collect(rows, topic, out)
}

// collect adds rows of (partition, next offset) to out, leaving out partitions
// without an offset (-1) yet.
func collect(rows *sql.Rows, topic string, out map[string]map[int32]int64) error {
	defer rows.Close()
	for rows.Next() {
		var part int32
		var next int64
		if err := rows.Scan(&part, &next); err != nil {
			return err
		}
		if next >= 0 {
			if out[topic] == nil {
				out[topic] = map[int32]int64{}
			}
			out[topic][part] = next
		}
	}
	return rows.Err()
}

// Reset sets the next offsets of group's partitions and marks them pending:
// members running meanwhile leave them in place, and the next member to load
// the offsets starts from them.
func (t *Table) Reset(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	err := t.inTx(ctx, nil, func(tx *sql.Tx) error {
		for topic, parts := range offsets {
			for part, next := range parts {
				if _, err := tx.ExecContext(ctx, t.resetSQL(), group, topic, part, next); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("offsets table %s: reset the offsets of %s: %w", t.name, group, err)
	}
	return nil
}

func (t *Table) inTx(ctx context.Context, opts *sql.TxOptions, f func(*sql.Tx) error) error {
	tx, err := t.db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if err := f(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Setup creates the table, or migrates one of sqlmirror's earlier layout (see
// the package documentation). Concurrent calls, from other processes too, are
// safe.
func (t *Table) Setup(ctx context.Context) error {
	if _, err := t.db.ExecContext(ctx, t.CreateSQL()); ignoreExists(err) != nil {
		return fmt.Errorf("create offsets table %s: %w", t.name, err)
	}
	cols, err := t.columns(ctx, t.db)
	if err != nil {
		return fmt.Errorf("offsets table %s: read its columns: %w", t.name, err)
	}
	if !isLegacy(cols) {
		return nil
	}
	if err := t.migrate(ctx); err != nil {
		return fmt.Errorf("offsets table %s: migrate from columns grp, part to consumer_group, kafka_partition: %w", t.name, err)
	}
	return nil
}

// isLegacy reports whether a table of these columns has sqlmirror's earlier
// layout.
func isLegacy(cols map[string]bool) bool { return cols["grp"] && !cols["consumer_group"] }

// migrate renames the legacy columns and adds the new ones. In Postgres it runs
// in one transaction holding the table's lock, and checks the columns again
// under it; MySQL commits every ALTER on its own, so a concurrent migration
// that got there first makes ours fail, and the columns then say whether the
// table is migrated.
func (t *Table) migrate(ctx context.Context) error {
	if t.d == MySQL {
		_, err := t.db.ExecContext(ctx, `ALTER TABLE `+t.q+`
	CHANGE COLUMN grp consumer_group VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	MODIFY COLUMN topic VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	CHANGE COLUMN part kafka_partition INT NOT NULL,
	ADD COLUMN reset_pending BOOLEAN NOT NULL DEFAULT FALSE,
	ADD COLUMN updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)`)
		if err != nil {
			cols, cerr := t.columns(ctx, t.db)
			if cerr == nil && !isLegacy(cols) && cols["reset_pending"] && cols["updated_at"] {
				return nil
			}
		}
		return err
	}
	return t.inTx(ctx, nil, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `LOCK TABLE `+t.q+` IN ACCESS EXCLUSIVE MODE`); err != nil {
			return err
		}
		cols, err := t.columns(ctx, tx)
		if err != nil || !isLegacy(cols) {
			return err
		}
		for _, q := range []string{
			`ALTER TABLE ` + t.q + ` RENAME COLUMN grp TO consumer_group`,
			`ALTER TABLE ` + t.q + ` RENAME COLUMN part TO kafka_partition`,
			`ALTER TABLE ` + t.q + ` ADD COLUMN IF NOT EXISTS reset_pending boolean NOT NULL DEFAULT false,
				ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now()`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// querier reads the catalog, in or out of a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// columns returns the table's column names, lower-case.
func (t *Table) columns(ctx context.Context, q querier) (map[string]bool, error) {
	var rows *sql.Rows
	var err error
	if t.d == MySQL {
		schema, table, ok := strings.Cut(t.name, ".")
		if !ok {
			schema, table = "", t.name
		}
		rows, err = q.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.COLUMNS
			WHERE TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ?`, schema, table)
	} else {
		rows, err = q.QueryContext(ctx, `SELECT attname FROM pg_attribute
			WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped`, t.q)
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols := map[string]bool{}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols[strings.ToLower(c)] = true
	}
	return cols, rows.Err()
}

// ignoreExists treats the "already exists" races of concurrent CREATE … IF NOT
// EXISTS in Postgres as success.
func ignoreExists(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P07" || pe.Code == "42710") {
		return nil
	}
	return err
}
