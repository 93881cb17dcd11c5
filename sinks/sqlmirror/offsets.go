package sqlmirror

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kanal-cdc/kanal/internal/sqloffsets"
)

// offsetStore is the offsets table of the target: PostgreSQL and MySQL targets
// use kanal's SQL sinks' one design (internal/sqloffsets), shared with the
// aggregators; Phoenix keeps its own (phoenixOffsets).
type offsetStore interface {
	// Setup creates (or migrates) the table.
	Setup(ctx context.Context) error
	// Lock reads a partition's stored state in tx, locking its row where the
	// target can.
	Lock(ctx context.Context, tx sqloffsets.Execer, group, topic string, partition int32) (sqloffsets.State, error)
	// StoreNext stores a partition's next offset in tx.
	StoreNext(ctx context.Context, tx sqloffsets.Execer, group, topic string, partition int32, next int64) error
	Load(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error)
	Reset(ctx context.Context, group string, offsets map[string]map[int32]int64) error
}

func newOffsetStore(cfg *Config, db *sql.DB, d dialect) offsetStore {
	switch cfg.Dialect {
	case Postgres:
		return sqloffsets.New(sqloffsets.Postgres, db, cfg.OffsetsTable)
	case MySQL:
		return sqloffsets.New(sqloffsets.MySQL, db, cfg.OffsetsTable)
	default:
		return &phoenixOffsets{d: d.(phoenixDialect), db: db, table: cfg.OffsetsTable}
	}
}

// phoenixOffsets is the offsets table of a Phoenix target: (GRP, TOPIC, PART,
// NEXT_OFFSET), as every release created it. It is not the SQL sinks' design:
// Phoenix has no row locks to claim a partition with, and cannot rename the
// columns of tables that exist. A reset is a plain store, so it is never
// pending: `kanal offsets reset` refuses to run while the group has members.
type phoenixOffsets struct {
	d     phoenixDialect
	db    *sql.DB
	table string
}

func (p *phoenixOffsets) Setup(ctx context.Context) error {
	if _, err := p.db.ExecContext(ctx, p.d.createOffsets(p.table)); err != nil {
		return fmt.Errorf("create offsets table %s: %w", p.table, err)
	}
	return nil
}

func (p *phoenixOffsets) Lock(ctx context.Context, tx sqloffsets.Execer, group, topic string, partition int32) (sqloffsets.State, error) {
	st := sqloffsets.State{Next: -1}
	err := tx.QueryRowContext(ctx, p.d.selectOffset(p.table), group, topic, int64(partition)).Scan(&st.Next)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("offsets table %s: read the partition's offset: %w", p.table, err)
	}
	return st, nil
}

func (p *phoenixOffsets) StoreNext(ctx context.Context, tx sqloffsets.Execer, group, topic string, partition int32, next int64) error {
	if _, err := tx.ExecContext(ctx, p.d.storeOffset(p.table), group, topic, int64(partition), next); err != nil {
		return fmt.Errorf("offsets table %s: store next offset %d: %w", p.table, next, err)
	}
	return nil
}

func (p *phoenixOffsets) Load(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	want := map[string]map[int32]bool{}
	for t, ps := range partitions {
		want[t] = map[int32]bool{}
		for _, p := range ps {
			want[t][p] = true
		}
	}
	rows, err := p.db.QueryContext(ctx, p.d.loadOffsets(p.table), group)
	if err != nil {
		return nil, fmt.Errorf("offsets table %s: load the offsets of %s: %w", p.table, group, err)
	}
	defer rows.Close()
	out := map[string]map[int32]int64{}
	for rows.Next() {
		var topic string
		var part, next int64
		if err := rows.Scan(&topic, &part, &next); err != nil {
			return nil, fmt.Errorf("offsets table %s: load the offsets of %s: %w", p.table, group, err)
		}
		if !want[topic][int32(part)] {
			continue
		}
		if out[topic] == nil {
			out[topic] = map[int32]int64{}
		}
		out[topic][int32(part)] = next
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offsets table %s: load the offsets of %s: %w", p.table, group, err)
	}
	return out, nil
}

func (p *phoenixOffsets) Reset(ctx context.Context, group string, offsets map[string]map[int32]int64) (err error) {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("offsets table %s: reset the offsets of %s: %w", p.table, group, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for topic, ps := range offsets {
		for part, off := range ps {
			if err = p.StoreNext(ctx, tx, group, topic, part, off); err != nil {
				return err
			}
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("offsets table %s: reset the offsets of %s: %w", p.table, group, err)
	}
	return nil
}

func (d phoenixDialect) createOffsets(table string) string {
	return "CREATE TABLE IF NOT EXISTS " + d.quote(table) + " (" + d.quote("grp") + " VARCHAR NOT NULL, " +
		d.quote("topic") + " VARCHAR NOT NULL, " + d.quote("part") + " INTEGER NOT NULL, " + d.quote("next_offset") +
		" BIGINT, CONSTRAINT " + d.quote("pk") + " PRIMARY KEY (" + joinQuoted(d, []string{"grp", "topic", "part"}) + "))"
}

func (d phoenixDialect) selectOffset(table string) string {
	return "SELECT " + d.quote("next_offset") + " FROM " + d.quote(table) + " WHERE " +
		keyWhere(d, []string{"grp", "topic", "part"})
}

func (d phoenixDialect) loadOffsets(table string) string {
	return "SELECT " + joinQuoted(d, []string{"topic", "part", "next_offset"}) + " FROM " + d.quote(table) +
		" WHERE " + d.quote("grp") + " = ?"
}

func (d phoenixDialect) storeOffset(table string) string {
	return "UPSERT INTO " + d.quote(table) + " (" + joinQuoted(d, []string{"grp", "topic", "part", "next_offset"}) + ") VALUES (?, ?, ?, ?)"
}
