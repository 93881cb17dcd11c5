package sqlmirror

import (
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

	avatica "github.com/apache/calcite-avatica-go/v5"
	avaticaerrors "github.com/apache/calcite-avatica-go/v5/errors"
	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/schemas"
)

// Handler mirrors changes into one target database. It is a consumer.Handler
// that keeps its consumer offsets in the target (consumer.OffsetStore and
// consumer.OffsetResetter), written in the same transaction as the rows of a
// batch; every row also carries the change sequence of its last write in the
// version column, so older changes never overwrite newer rows.
type Handler struct {
	cfg    Config
	log    *slog.Logger
	db     *sql.DB
	d      dialect
	off    offsetStore
	tables map[string]*TableConfig
	skip   map[uint32]bool

	initMu sync.Mutex
	inited bool

	mu    sync.Mutex
	plans map[string]*plan // by table and column signature
	keys  map[string]*plan // by table: the latest plan, for tombstones
	// lastSkip holds, per topic/partition, the last record handled when it was
	// a delete skipped for its server id: its tombstone, next, is skipped too.
	lastSkip map[string]skipMark
}

type skipMark struct {
	offset int64
	key    string
}

var (
	_ consumer.OffsetStore    = (*Handler)(nil)
	_ consumer.OffsetResetter = (*Handler)(nil)
)

// New returns a mirror for cfg. It does not connect: connections are made on
// first use and the offsets table is created then. log gets the handler's
// name; per-record messages add table and key.
func New(cfg Config, log *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := open(&cfg, log)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxOpenConns)
	d := newDialect(&cfg)
	h := &Handler{
		cfg:    cfg,
		log:    log.With("handler", cfg.Name, "dialect", cfg.Dialect),
		db:     db,
		d:      d,
		off:    newOffsetStore(&cfg, db, d),
		tables: map[string]*TableConfig{},
		skip:   map[uint32]bool{},
		plans:  map[string]*plan{},
		keys:   map[string]*plan{},

		lastSkip: map[string]skipMark{},
	}
	for i := range cfg.Tables {
		h.tables[cfg.Tables[i].Source] = &cfg.Tables[i]
	}
	for _, id := range cfg.SkipServerIDs {
		h.skip[id] = true
	}
	return h, nil
}

// open opens the target without connecting. Errors never quote the DSN. log
// gets the warning about a plaintext connection to another machine.
func open(cfg *Config, log *slog.Logger) (*sql.DB, error) {
	switch cfg.Dialect {
	case Postgres:
		pc, err := pgx.ParseConfig(cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("%w: dsn: not a valid PostgreSQL connection string", ErrConfig)
		}
		cs := cfg.conn(net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))))
		if err := cs.ApplyPostgres(pc); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		cs.WarnPostgres(log, pc)
		return sql.OpenDB(cs.PostgresConnector(pc)), nil
	case MySQL:
		mc, err := mysql.ParseDSN(cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("%w: dsn: not a valid MySQL DSN", ErrConfig)
		}
		if mc.Params == nil {
			mc.Params = map[string]string{}
		}
		mc.Params["time_zone"] = "'+00:00'"
		if cfg.WriteServerID != 0 {
			mc.Params["server_id"] = strconv.FormatUint(uint64(cfg.WriteServerID), 10)
		}
		mc.InterpolateParams = true
		mc.ParseTime = false
		cs := cfg.conn(mc.Addr)
		if err := cs.ApplyMySQL(mc); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		cs.WarnMySQL(log, mc)
		conn, err := cs.MySQLConnector(mc)
		if err != nil {
			return nil, fmt.Errorf("%w: dsn: not a valid MySQL DSN", ErrConfig)
		}
		return sql.OpenDB(conn), nil
	default:
		if _, err := avatica.ParseDSN(cfg.DSN); err != nil {
			return nil, fmt.Errorf("%w: dsn: not a valid Phoenix Query Server URL", ErrConfig)
		}
		return sql.OpenDB(avatica.NewConnector(cfg.DSN)), nil
	}
}

// Name returns the configured name.
func (h *Handler) Name() string { return h.cfg.Name }

// Close closes the connections to the target.
func (h *Handler) Close() error { return h.db.Close() }

// DB returns the handler's connection pool to the target (for tests and
// tools; the mirror owns it).
func (h *Handler) DB() *sql.DB { return h.db }

func (h *Handler) init(ctx context.Context) error {
	h.initMu.Lock()
	defer h.initMu.Unlock()
	if h.inited {
		return nil
	}
	if err := h.off.Setup(ctx); err != nil {
		return fmt.Errorf("sqlmirror %s: %w", h.cfg.Name, err)
	}
	h.inited = true
	return nil
}

// Handle applies a batch in one transaction of the target, in offset order,
// together with the batch's next offset. Records below the offset stored for
// the partition were applied before and are skipped, so a batch delivered
// again (a retry, a late duplicate) is a no-op.
func (h *Handler) Handle(ctx context.Context, b consumer.Batch) (err error) {
	if len(b.Records) == 0 {
		return nil
	}
	if err := h.init(ctx); err != nil {
		return err
	}
	var opts *sql.TxOptions
	if h.cfg.Dialect == MySQL {
		// No gap locks: batches of different partitions touch different keys
		// and must not deadlock on the gaps between them.
		opts = &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	tx, err := h.db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqlmirror %s: begin: %w", h.cfg.Name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	st, err := h.off.Lock(ctx, tx, b.Group, b.Topic, b.Partition)
	if err != nil {
		return fmt.Errorf("sqlmirror %s: %s/%d: %w", h.cfg.Name, b.Topic, b.Partition, err)
	}
	next := st.Next
	if next >= b.NextOffset() {
		err = tx.Rollback()
		return nil
	}
	tp := b.Topic + "/" + strconv.Itoa(int(b.Partition))
	h.mu.Lock()
	mark, marked := h.lastSkip[tp]
	h.mu.Unlock()
	store := b.NextOffset()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Offset < next {
			continue
		}
		switch {
		case r.Change == nil && marked && mark.key == r.Key && r.Offset > mark.offset:
			// The tombstone of a skipped delete: skipped too.
			marked = false
			continue
		case r.Change != nil && h.skip[r.Change.Source.ServerID]:
			h.log.DebugContext(ctx, "skipping a change written by a mirror", "table", r.Table, "key", r.Key, "server_id", r.Change.Source.ServerID)
			marked = r.Change.Op == schemas.OpDelete
			mark = skipMark{offset: r.Offset, key: r.Key}
			continue
		}
		marked = false
		if err = h.apply(ctx, tx, r); err != nil {
			if consumer.IsPermanent(err) {
				h.log.WarnContext(ctx, "record cannot be mirrored", "table", r.Table, "key", r.Key, "offset", r.Offset, "err", err)
			}
			return err
		}
	}
	if marked && mark.offset == b.Records[len(b.Records)-1].Offset {
		// A skipped delete ends the batch and its tombstone is still to come:
		// keep the stored offset at the delete, so that a consumer resuming
		// from it (after a crash or a rebalance) sees the delete again and
		// knows to skip the tombstone.
		store = mark.offset
	}
	if !st.ResetPending {
		// A pending reset (kanal offsets reset while this member ran) stays in
		// place until the offsets are loaded again.
		if err = h.off.StoreNext(ctx, tx, b.Group, b.Topic, b.Partition, store); err != nil {
			return fmt.Errorf("sqlmirror %s: %s/%d: %w", h.cfg.Name, b.Topic, b.Partition, err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlmirror %s: commit %s/%d: %w", h.cfg.Name, b.Topic, b.Partition, err)
	}
	h.mu.Lock()
	if marked {
		h.lastSkip[tp] = mark
	} else {
		delete(h.lastSkip, tp)
	}
	h.mu.Unlock()
	return nil
}

// LoadOffsets returns the offsets stored for group in the target. Loading them
// also ends a pending `kanal offsets reset` of those partitions.
func (h *Handler) LoadOffsets(ctx context.Context, group string, partitions map[string][]int32) (map[string]map[int32]int64, error) {
	if err := h.init(ctx); err != nil {
		return nil, err
	}
	out, err := h.off.Load(ctx, group, partitions)
	if err != nil {
		return nil, fmt.Errorf("sqlmirror %s: %w", h.cfg.Name, err)
	}
	return out, nil
}

// ResetOffsets sets the stored next offset of each given partition (used by
// `kanal offsets reset`). After a reset to earlier offsets the changes are
// applied again; the version column keeps rows from going back in time. The
// new offsets take effect when the partitions are next assigned: members
// running meanwhile leave them in place (PostgreSQL, MySQL).
func (h *Handler) ResetOffsets(ctx context.Context, group string, offsets map[string]map[int32]int64) error {
	if err := h.init(ctx); err != nil {
		return err
	}
	if err := h.off.Reset(ctx, group, offsets); err != nil {
		return fmt.Errorf("sqlmirror %s: %w", h.cfg.Name, err)
	}
	return nil
}

// plan is how the rows of one table with one column layout are written.
type plan struct {
	table     string // source "db.table"
	target    string
	cols      []schemas.Column // copied source columns, table order
	names     []string         // their target names, then the version column
	key       []schemas.Column // the source key columns, table order
	keyNames  []string
	upsertSQL string
	delSQL    string // guarded by version
	delAnySQL string // unguarded (tombstones of unknown version)
}

func (h *Handler) planFor(table string, cols []schemas.Column) (*plan, error) {
	var sig strings.Builder
	sig.WriteString(table)
	for _, c := range cols {
		sig.WriteString("\x00" + c.Name + "\x01" + c.Type)
		if c.PK {
			sig.WriteString("\x02")
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.plans[sig.String()]; ok {
		h.keys[table] = p
		return p, nil
	}
	tc := h.tables[table]
	if tc == nil {
		tc = &TableConfig{}
	}
	target := tc.Target
	if target == "" {
		_, target, _ = strings.Cut(table, ".")
	}
	include := map[string]bool{}
	for _, c := range tc.Include {
		include[c] = true
	}
	exclude := map[string]bool{}
	for _, c := range tc.Exclude {
		exclude[c] = true
	}
	p := &plan{table: table, target: target}
	for _, c := range cols {
		if c.Name == h.cfg.VersionColumn {
			continue
		}
		if !c.PK && (exclude[c.Name] || len(include) > 0 && !include[c.Name]) {
			continue
		}
		name := c.Name
		if r, ok := tc.Rename[c.Name]; ok {
			name = r
		}
		p.cols = append(p.cols, c)
		p.names = append(p.names, name)
		if c.PK {
			p.key = append(p.key, c)
			p.keyNames = append(p.keyNames, name)
		}
	}
	if len(p.key) == 0 {
		return nil, consumer.Permanent(fmt.Errorf("sqlmirror: table %s has no primary key: a mirror needs one", table))
	}
	p.names = append(p.names, h.cfg.VersionColumn)
	p.upsertSQL = h.d.upsert(target, p.names, p.keyNames, h.cfg.VersionColumn)
	p.delSQL = h.d.delete(target, p.keyNames, h.cfg.VersionColumn, true)
	p.delAnySQL = h.d.delete(target, p.keyNames, h.cfg.VersionColumn, false)
	h.plans[sig.String()] = p
	h.keys[table] = p
	return p, nil
}

func (h *Handler) apply(ctx context.Context, tx *sql.Tx, r *consumer.Record) error {
	if r.Change == nil {
		return h.tombstone(ctx, tx, r)
	}
	c := r.Change
	if c.Op == schemas.OpTruncate {
		return h.truncate(ctx, tx, r)
	}
	if c.KeyFallback {
		return consumer.Permanent(fmt.Errorf("sqlmirror: table %s has no primary key: a mirror needs one", r.Table))
	}
	if c.Seq > math.MaxInt64 {
		return consumer.Permanent(fmt.Errorf("sqlmirror: table %s key %s: seq %d does not fit the version column", r.Table, r.Key, c.Seq))
	}
	p, err := h.planFor(r.Table, c.Columns)
	if err != nil {
		return err
	}
	switch c.Op {
	case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
		args := make([]any, 0, len(p.cols)+1)
		for _, col := range p.cols {
			v, err := h.value(r.Table, col, c.After[col.Name])
			if err != nil {
				return err
			}
			args = append(args, v)
		}
		args = append(args, int64(c.Seq))
		return h.exec(ctx, tx, r, p.upsertSQL, args)
	case schemas.OpDelete:
		args := make([]any, 0, len(p.key)+1)
		for _, col := range p.key {
			v, err := h.value(r.Table, col, c.Before[col.Name])
			if err != nil {
				return err
			}
			args = append(args, v)
		}
		if c.Seq == 0 {
			return h.exec(ctx, tx, r, p.delAnySQL, args)
		}
		return h.exec(ctx, tx, r, p.delSQL, append(args, int64(c.Seq)))
	}
	return consumer.Permanent(fmt.Errorf("sqlmirror: table %s key %s: unknown op %q", r.Table, r.Key, c.Op))
}

// tombstone deletes the row a tombstone names. Its delete usually came just
// before and did it already; after compaction removed the delete, the
// tombstone is all that is left. Its key values are parsed with the key column
// types of the table's last change seen by this handler or, when none was
// seen since the process started, with the target's primary key read from its
// catalog (PostgreSQL, MySQL; Phoenix skips such a tombstone).
func (h *Handler) tombstone(ctx context.Context, tx *sql.Tx, r *consumer.Record) error {
	h.mu.Lock()
	p := h.keys[r.Table]
	h.mu.Unlock()
	if p == nil {
		var err error
		if p, err = h.catalogKey(ctx, tx, r.Table); err != nil {
			return err
		}
		if p == nil {
			h.log.DebugContext(ctx, "tombstone of a table not seen yet, skipped", "table", r.Table, "key", r.Key)
			return nil
		}
		h.mu.Lock()
		if h.keys[r.Table] == nil {
			h.keys[r.Table] = p
		}
		h.mu.Unlock()
	}
	_, pk, ok := strings.Cut(r.Key, ":")
	if !ok {
		return consumer.Permanent(fmt.Errorf("sqlmirror: tombstone key %q has no ':'", r.Key))
	}
	parts := schemas.SplitKeyRaw(pk)
	if len(parts) != len(p.key) {
		return consumer.Permanent(fmt.Errorf("sqlmirror: tombstone key %q has %d parts, table %s has %d key columns", r.Key, len(parts), r.Table, len(p.key)))
	}
	args := make([]any, 0, len(parts)+1)
	for i, raw := range parts {
		kv, err := keyValue(p.key[i], raw)
		if err != nil {
			return consumer.Permanent(fmt.Errorf("sqlmirror: tombstone key %q, column %s: %w", r.Key, p.key[i].Name, err))
		}
		v, err := h.value(r.Table, p.key[i], kv)
		if err != nil {
			return err
		}
		args = append(args, v)
	}
	if r.Seq == 0 || r.Seq > math.MaxInt64 {
		return h.exec(ctx, tx, r, p.delAnySQL, args)
	}
	return h.exec(ctx, tx, r, p.delSQL, append(args, int64(r.Seq)))
}

// catalogKey reads the primary key of table's target from the target's
// catalog (PostgreSQL, MySQL), for a tombstone of a table no change of was seen
// since the process started. The target's key columns must be the source's, in
// the same order. It returns nil when the dialect has no catalog lookup.
func (h *Handler) catalogKey(ctx context.Context, tx *sql.Tx, table string) (*plan, error) {
	h.mu.Lock()
	tc := h.tables[table]
	h.mu.Unlock()
	target := ""
	if tc != nil {
		target = tc.Target
	}
	if target == "" {
		_, target, _ = strings.Cut(table, ".")
	}
	var rows *sql.Rows
	var err error
	switch h.cfg.Dialect {
	case Postgres:
		rows, err = tx.QueryContext(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i
			JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`, h.d.quote(target))
	case MySQL:
		schema, name, ok := strings.Cut(target, ".")
		if !ok {
			schema, name = "", target
		}
		rows, err = tx.QueryContext(ctx, `SELECT k.COLUMN_NAME, c.DATA_TYPE FROM information_schema.KEY_COLUMN_USAGE k
			JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME AND c.COLUMN_NAME = k.COLUMN_NAME
			WHERE k.TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND k.TABLE_NAME = ? AND k.CONSTRAINT_NAME = 'PRIMARY'
			ORDER BY k.ORDINAL_POSITION`, schema, name)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlmirror: primary key of %s: %w", target, err)
	}
	defer rows.Close()
	p := &plan{table: table, target: target}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, fmt.Errorf("sqlmirror: primary key of %s: %w", target, err)
		}
		// Key parts are text; only byte strings need decoding ("0x…").
		kind := "varchar"
		if t := strings.ToLower(typ); t == "bytea" || strings.Contains(t, "binary") || strings.Contains(t, "blob") {
			kind = "varbinary"
		}
		p.key = append(p.key, schemas.Column{Name: name, Type: kind, PK: true})
		p.keyNames = append(p.keyNames, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlmirror: primary key of %s: %w", target, err)
	}
	if len(p.key) == 0 {
		return nil, consumer.Permanent(fmt.Errorf("sqlmirror: target table %s of %s has no primary key", target, table))
	}
	p.delSQL = h.d.delete(target, p.keyNames, h.cfg.VersionColumn, true)
	p.delAnySQL = h.d.delete(target, p.keyNames, h.cfg.VersionColumn, false)
	return p, nil
}

// keyValue parses a raw key component back into a kanal value of col's kind.
func keyValue(col schemas.Column, raw string) (any, error) {
	if schemas.IsNullComponent(raw) {
		return nil, nil
	}
	s := schemas.UnescapeKeyComponent(raw)
	switch col.Kind() {
	case schemas.KindInt, schemas.KindYear:
		return strconv.ParseInt(s, 10, 64)
	case schemas.KindUint, schemas.KindBit:
		return strconv.ParseUint(s, 10, 64)
	case schemas.KindDecimal:
		return schemas.Decimal(s), nil
	case schemas.KindFloat:
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case schemas.KindDouble:
		return strconv.ParseFloat(s, 64)
	case schemas.KindBytes:
		return hex.DecodeString(strings.TrimPrefix(s, "0x"))
	}
	return s, nil
}

func (h *Handler) value(table string, col schemas.Column, v any) (any, error) {
	out, err := h.d.convert(col.Type, v)
	if err != nil {
		return nil, consumer.Permanent(&ValueError{Table: table, Column: col.Name, Type: col.Type, Value: showValue(v), Reason: err.Error()})
	}
	return out, nil
}

func (h *Handler) exec(ctx context.Context, tx *sql.Tx, r *consumer.Record, query string, args []any) error {
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		err = fmt.Errorf("sqlmirror: table %s key %s: %w", r.Table, r.Key, err)
		if isDataError(err) {
			return consumer.Permanent(err)
		}
		return err
	}
	return nil
}

// isDataError reports whether the target refused a value (retrying cannot help).
func isDataError(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "22") || pe.Code == "23502" || pe.Code == "23514"
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1048, 1264, 1265, 1292, 1366, 1367, 1406, 3140:
			return true
		}
		return false
	}
	var ae avaticaerrors.ResponseError
	if errors.As(err, &ae) {
		return strings.HasPrefix(string(ae.SqlState), "22")
	}
	return false
}
