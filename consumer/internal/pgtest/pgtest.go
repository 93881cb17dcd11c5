// Package pgtest is a small Postgres sink for kanal's consumer tests: rows keyed by
// the kanal record key, stored as the text rendering cdctest uses, so a test can
// compare the sink with the source tables. It comes in the two kinds the consumer
// contract allows:
//
//   - Versioned: idempotent; each row keeps the Seq of the change that wrote it and
//     older changes are ignored. Offsets live in Kafka.
//   - Transactional: not idempotent on its own (it also counts applied changes per
//     table, a running sum); it stores its consumer offsets in the same Postgres
//     transaction and implements consumer.OffsetStore and consumer.OffsetResetter.
package pgtest

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
)

// Hooks let a test inject failures and watch what was applied.
type Hooks struct {
	// Fail, when set, is asked about every record before a batch is applied; an
	// error fails the whole Handle call (the transaction is rolled back).
	Fail func(r *consumer.Record) error
	// Applied, when set, is called after a batch was committed to Postgres.
	Applied func(b consumer.Batch)
}

type base struct {
	name  string
	pool  *pgxpool.Pool
	table string
	hooks Hooks
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

func open(ctx context.Context, dsn, name, table string) (*base, error) {
	if !identRE.MatchString(table) {
		return nil, fmt.Errorf("pgtest: bad table name %q", table)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgtest: connect: %w", err)
	}
	b := &base{name: name, pool: pool, table: table}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ` + table + ` (key text PRIMARY KEY, tbl text NOT NULL, seq bigint NOT NULL, row jsonb, deleted boolean NOT NULL DEFAULT false)`,
		`CREATE TABLE IF NOT EXISTS ` + table + `_offsets (grp text, topic text, part int, next bigint NOT NULL, PRIMARY KEY (grp, topic, part))`,
		`CREATE TABLE IF NOT EXISTS ` + table + `_applied (tbl text PRIMARY KEY, n bigint NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + table + `_log (id bigserial PRIMARY KEY, topic text, part int, first bigint, last bigint)`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			pool.Close()
			return nil, fmt.Errorf("pgtest: %s: %w", q, err)
		}
	}
	return b, nil
}

// Name returns the handler name.
func (b *base) Name() string { return b.name }

// SetHooks installs test hooks; call it before the sink is used.
func (b *base) SetHooks(h Hooks) { b.hooks = h }

// Close closes the connection pool.
func (b *base) Close() { b.pool.Close() }

// State returns key → row, rows rendered like cdctest.RenderRow.
func (b *base) State(ctx context.Context) (map[string]map[string]string, error) {
	rows, err := b.pool.Query(ctx, `SELECT key, row FROM `+b.table+` WHERE NOT deleted`)
	if err != nil {
		return nil, fmt.Errorf("pgtest: read state: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var key string
		var raw []byte
		if err := rows.Scan(&key, &raw); err != nil {
			return nil, err
		}
		var row map[string]string
		if err := json.Unmarshal(raw, &row); err != nil {
			return nil, err
		}
		out[key] = row
	}
	return out, rows.Err()
}

// TableState returns the rows of one source table ("db.table").
func (b *base) TableState(ctx context.Context, table string) (map[string]map[string]string, error) {
	all, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for k, v := range all {
		if t, _, _ := cut(k); t == table {
			out[k] = v
		}
	}
	return out, nil
}

// Truncate empties the sink (rows, counters and stored offsets).
func (b *base) Truncate(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, `TRUNCATE `+b.table+`, `+b.table+`_offsets, `+b.table+`_applied, `+b.table+`_log`)
	return err
}

func cut(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == ':' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

func (b *base) check(recs []consumer.Record) error {
	if b.hooks.Fail == nil {
		return nil
	}
	for i := range recs {
		if err := b.hooks.Fail(&recs[i]); err != nil {
			return err
		}
	}
	return nil
}

func rowJSON(r *consumer.Record) ([]byte, error) {
	return json.Marshal(cdctest.RenderRow(r.Change.After))
}

// Versioned is the idempotent sink: a row is only written by a change with a
// higher Seq than the one that wrote it last. Deleted rows stay as markers with
// the delete's Seq (soft deletes): without them a create delivered late, after
// the delete, would resurrect the row — the conformance suite catches exactly
// that.
type Versioned struct{ *base }

// NewVersioned connects and creates the sink's tables (if missing).
func NewVersioned(ctx context.Context, dsn, name, table string) (*Versioned, error) {
	b, err := open(ctx, dsn, name, table)
	if err != nil {
		return nil, err
	}
	return &Versioned{b}, nil
}

// Handle applies the batch in one transaction.
func (s *Versioned) Handle(ctx context.Context, b consumer.Batch) error {
	if err := s.check(b.Records); err != nil {
		return err
	}
	batch := &pgx.Batch{}
	for i := range b.Records {
		r := &b.Records[i]
		switch {
		case r.Tombstone && r.Seq == 0:
			// The row is gone as of this point of the log, but the version of its
			// delete is unknown (compaction removed the delete): mark it deleted
			// and keep the version it had.
			batch.Queue(`UPDATE `+s.table+` SET deleted = true, row = NULL WHERE key = $1`, r.Key)
		case r.Tombstone || r.Change.After == nil:
			// Deletes keep a marker with their version, so that an older create
			// delivered late cannot bring the row back.
			batch.Queue(`INSERT INTO `+s.table+` AS t (key, tbl, seq, row, deleted) VALUES ($1, $2, $3, NULL, true)
				ON CONFLICT (key) DO UPDATE SET seq = EXCLUDED.seq, row = NULL, deleted = true
				WHERE t.seq <= EXCLUDED.seq`, r.Key, r.Table, int64(r.Seq))
		default:
			row, err := rowJSON(r)
			if err != nil {
				return consumer.Permanent(err)
			}
			batch.Queue(`INSERT INTO `+s.table+` AS t (key, tbl, seq, row) VALUES ($1, $2, $3, $4)
				ON CONFLICT (key) DO UPDATE SET tbl = EXCLUDED.tbl, seq = EXCLUDED.seq, row = EXCLUDED.row, deleted = false
				WHERE t.seq < EXCLUDED.seq`, r.Key, r.Table, int64(r.Seq), row)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("pgtest %s: apply %s/%d@%d..: %w", s.name, b.Topic, b.Partition, b.Records[0].Offset, err)
	}
	if s.hooks.Applied != nil {
		s.hooks.Applied(b)
	}
	return nil
}

// Transactional stores rows without version checks, counts applied changes per
// table, and keeps its offsets in the same transaction.
type Transactional struct{ *base }

// NewTransactional connects and creates the sink's tables (if missing).
func NewTransactional(ctx context.Context, dsn, name, table string) (*Transactional, error) {
	b, err := open(ctx, dsn, name, table)
	if err != nil {
		return nil, err
	}
	return &Transactional{b}, nil
}

// Handle applies the records at or after the stored offset, bumps the counters
// and stores the next offset, all in one transaction.
func (s *Transactional) Handle(ctx context.Context, b consumer.Batch) error {
	if err := s.check(b.Records); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var next int64 = -1
		err := tx.QueryRow(ctx, `SELECT next FROM `+s.table+`_offsets WHERE grp = $1 AND topic = $2 AND part = $3 FOR UPDATE`,
			b.Group, b.Topic, b.Partition).Scan(&next)
		if err != nil && err != pgx.ErrNoRows {
			return err
		}
		batch := &pgx.Batch{}
		counts := map[string]int64{}
		first, last := int64(-1), int64(-1)
		for i := range b.Records {
			r := &b.Records[i]
			if r.Offset < next {
				continue // applied by an earlier transaction
			}
			if first < 0 {
				first = r.Offset
			}
			last = r.Offset
			switch {
			case r.Tombstone:
				batch.Queue(`DELETE FROM `+s.table+` WHERE key = $1`, r.Key)
				continue
			case r.Change.After == nil:
				batch.Queue(`DELETE FROM `+s.table+` WHERE key = $1`, r.Key)
			default:
				row, err := rowJSON(r)
				if err != nil {
					return consumer.Permanent(err)
				}
				batch.Queue(`INSERT INTO `+s.table+` (key, tbl, seq, row) VALUES ($1, $2, $3, $4)
					ON CONFLICT (key) DO UPDATE SET tbl = EXCLUDED.tbl, seq = EXCLUDED.seq, row = EXCLUDED.row`,
					r.Key, r.Table, int64(r.Seq), row)
			}
			counts[r.Table]++
		}
		for t, n := range counts {
			batch.Queue(`INSERT INTO `+s.table+`_applied (tbl, n) VALUES ($1, $2) ON CONFLICT (tbl) DO UPDATE SET n = `+s.table+`_applied.n + EXCLUDED.n`, t, n)
		}
		if first >= 0 {
			// The log of what was applied, committed with it: the truth about order
			// even when a commit's outcome never reached the handler.
			batch.Queue(`INSERT INTO `+s.table+`_log (topic, part, first, last) VALUES ($1, $2, $3, $4)`, b.Topic, b.Partition, first, last)
		}
		batch.Queue(`INSERT INTO `+s.table+`_offsets (grp, topic, part, next) VALUES ($1, $2, $3, $4)
			ON CONFLICT (grp, topic, part) DO UPDATE SET next = EXCLUDED.next`, b.Group, b.Topic, b.Partition, b.NextOffset())
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("pgtest %s: apply %s/%d@%d..: %w", s.name, b.Topic, b.Partition, b.Records[0].Offset, err)
	}
	if s.hooks.Applied != nil {
		s.hooks.Applied(b)
	}
	return nil
}

// LoadOffsets implements consumer.OffsetStore.
func (s *Transactional) LoadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT topic, part, next FROM `+s.table+`_offsets WHERE grp = $1`, group)
	if err != nil {
		return nil, fmt.Errorf("pgtest: load offsets: %w", err)
	}
	defer rows.Close()
	want := map[string]map[int32]bool{}
	for t, ps := range partitions {
		want[t] = map[int32]bool{}
		for _, p := range ps {
			want[t][p] = true
		}
	}
	out := map[string]map[int32]int64{}
	for rows.Next() {
		var topic string
		var part int32
		var next int64
		if err := rows.Scan(&topic, &part, &next); err != nil {
			return nil, err
		}
		if want[topic][part] {
			if out[topic] == nil {
				out[topic] = map[int32]int64{}
			}
			out[topic][part] = next
		}
	}
	return out, rows.Err()
}

// ResetOffsets implements consumer.OffsetResetter.
func (s *Transactional) ResetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for t, ps := range offsets {
			for p, off := range ps {
				if _, err := tx.Exec(ctx, `INSERT INTO `+s.table+`_offsets (grp, topic, part, next) VALUES ($1, $2, $3, $4)
					ON CONFLICT (grp, topic, part) DO UPDATE SET next = EXCLUDED.next`, group, t, p, off); err != nil {
					return fmt.Errorf("pgtest: reset offsets: %w", err)
				}
			}
		}
		return nil
	})
}

// Applied returns the number of changes applied per table (Transactional only
// counts; it is what makes exactly-once observable).
func (s *Transactional) Applied(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT tbl, n FROM `+s.table+`_applied`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var t string
		var n int64
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		out[t] = n
	}
	return out, rows.Err()
}

// Snapshot copies the sink's tables aside (a backup taken now).
func (b *base) Snapshot(ctx context.Context) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		for _, t := range []string{b.table, b.table + "_offsets", b.table + "_applied", b.table + "_log"} {
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+t+`_snap`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE `+t+`_snap AS SELECT * FROM `+t); err != nil {
				return err
			}
		}
		return nil
	})
}

// Restore replaces the sink's tables by the last Snapshot.
func (b *base) Restore(ctx context.Context) error {
	return pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		for _, t := range []string{b.table, b.table + "_offsets", b.table + "_applied", b.table + "_log"} {
			if _, err := tx.Exec(ctx, `TRUNCATE `+t); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+t+` SELECT * FROM `+t+`_snap`); err != nil {
				return err
			}
		}
		return nil
	})
}

// TruncateData empties the rows and counters but keeps the stored offsets.
func (b *base) TruncateData(ctx context.Context) error {
	_, err := b.pool.Exec(ctx, `TRUNCATE `+b.table+`, `+b.table+`_applied`)
	return err
}

// Log returns, per "topic/partition", the offset ranges [first, last] of the
// records each transaction applied, in commit order.
func (s *Transactional) Log(ctx context.Context) (map[string][][2]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT topic, part, first, last FROM `+s.table+`_log ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][][2]int64{}
	for rows.Next() {
		var topic string
		var part int32
		var first, last int64
		if err := rows.Scan(&topic, &part, &first, &last); err != nil {
			return nil, err
		}
		k := fmt.Sprintf("%s/%d", topic, part)
		out[k] = append(out[k], [2]int64{first, last})
	}
	return out, rows.Err()
}
