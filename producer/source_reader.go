package producer

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kanal-cdc/kanal/schemas"
)

// SourceReader reads a source's tables the way backfills read them — chunks in
// key order, each at one consistent snapshot, rows as the changes a snapshot
// read carries (op r) with exactly its values — for tools that compare a target
// with the source (kanal verify). It is not safe for concurrent use.
type SourceReader struct {
	cfg *Config
	r   *snapReader
}

// NewSourceReader validates cfg and returns a reader of its source; it connects
// on first use.
func NewSourceReader(cfg Config, log *slog.Logger) (*SourceReader, error) {
	if err := cfg.Source.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := newSnapReader(&cfg.Source, nil, log)
	if err != nil {
		return nil, err
	}
	return &SourceReader{cfg: &cfg, r: r}, nil
}

// Close closes the reader's connection.
func (sr *SourceReader) Close() error { return sr.r.db.Close() }

// SourceChunk is rows of one table read at one consistent snapshot.
type SourceChunk struct {
	// Rows are the rows in key order, as snapshot reads (Seq 0).
	Rows []*schemas.Change
	// At is the binlog position of the snapshot: every transaction before it is
	// in Rows, none after it.
	At schemas.Position
	// More says rows may follow; Next is where the next chunk starts.
	More bool
	Next *SourceCursor
	// Missing are the keys asked for (Keys) that have no row.
	Missing []string
	// Estimate is the table's estimated rows (first chunk only; -1 unknown).
	Estimate int64
}

// SourceCursor is where a chunk ends.
type SourceCursor struct{ raw [][]byte }

// Chunk reads the next limit rows of table ("db.table") after after (nil: from
// the first row).
func (sr *SourceReader) Chunk(ctx context.Context, table string, after *SourceCursor, limit int) (*SourceChunk, error) {
	db, tbl, ok := strings.Cut(table, ".")
	if !ok {
		return nil, fmt.Errorf("%q is not a db.table name", table)
	}
	req := &chunkReq{db: db, table: tbl, limit: limit, estimate: after == nil}
	if after != nil {
		req.after = after.raw
	}
	return sr.read(ctx, req)
}

// Keys reads the rows of table with the given record keys, at one consistent
// snapshot; keys without a row are listed in Missing.
func (sr *SourceReader) Keys(ctx context.Context, table string, keys []string) (*SourceChunk, error) {
	db, tbl, ok := strings.Cut(table, ".")
	if !ok {
		return nil, fmt.Errorf("%q is not a db.table name", table)
	}
	out := &SourceChunk{Estimate: -1}
	for start := 0; start < len(keys); start += keyedChunkSize {
		c, err := sr.read(ctx, &chunkReq{db: db, table: tbl, keys: keys[start:min(len(keys), start+keyedChunkSize)]})
		if err != nil {
			return nil, err
		}
		out.Rows = append(out.Rows, c.Rows...)
		out.Missing = append(out.Missing, c.Missing...)
		out.At = c.At
	}
	return out, nil
}

func (sr *SourceReader) read(ctx context.Context, req *chunkReq) (*SourceChunk, error) {
	res := sr.r.read(ctx, req)
	if res.jobErr != nil {
		return nil, res.jobErr
	}
	if res.err != nil {
		return nil, res.err
	}
	out := &SourceChunk{At: res.at, More: res.more, Missing: res.missing, Estimate: res.total}
	if res.rows > 0 && len(req.keys) == 0 {
		out.Next = &SourceCursor{raw: res.lastRaw()}
	}
	ti := res.table.ti
	src := schemas.Source{Name: sr.cfg.Source.Name, File: res.at.File, Pos: res.at.Pos, TsMs: res.readAt.UnixMilli(), DB: ti.db, Table: ti.table}
	n := res.ncols
	for i := 0; i < res.rows; i++ {
		if i > 0 && res.keys[i] == res.keys[i-1] {
			continue // identical rows of a table keyed by all columns
		}
		after := make(map[string]any, n)
		for c, v := range res.vals[i*n : (i+1)*n] {
			after[ti.columns[c].Name] = v.Any()
		}
		s := src
		s.Row = i
		out.Rows = append(out.Rows, &schemas.Change{Op: schemas.OpRead, Source: s, Columns: ti.columns, After: after, KeyFallback: ti.keyFallback})
	}
	return out, nil
}

// BinlogPosition returns the source's current binlog position (the end of what
// it has written so far).
func (sr *SourceReader) BinlogPosition(ctx context.Context) (schemas.Position, error) {
	conn, err := sr.r.db.Conn(ctx)
	if err != nil {
		return schemas.Position{}, err
	}
	defer conn.Close()
	var p schemas.Position
	rows, err := conn.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return p, fmt.Errorf("SHOW MASTER STATUS: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return p, fmt.Errorf("%w: SHOW MASTER STATUS returned nothing: is the binary log enabled?", ErrServerConfig)
	}
	vals := make([]any, len(cols))
	vals[0], vals[1] = &p.File, &p.Pos
	for i := 2; i < len(cols); i++ {
		vals[i] = new(any)
	}
	if err := rows.Scan(vals...); err != nil {
		return p, fmt.Errorf("SHOW MASTER STATUS: %w", err)
	}
	return p, rows.Err()
}

// PositionReached reports whether a committed position covers at (a binlog
// position): everything before at is written.
func PositionReached(committed *schemas.Position, at schemas.Position) bool {
	return committed != nil && committed.RowsDone == 0 && comparePos(*committed, at) >= 0
}
