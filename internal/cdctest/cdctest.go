// Package cdctest holds what kanal's end-to-end tests share: reading every committed
// record of a set of topics, replaying changes into a table image, and reading the
// source table in the same value encoding so the two can be compared.
package cdctest

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

// Record is a decoded change with where it was read.
type Record struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       string
	Tombstone bool
	Change    *schemas.Change   // nil for tombstones and oversize markers
	Headers   map[string]string // the record's headers by name
	Value     []byte
	// Oversize is set for an oversize marker (kafka.oversize_policy: skip).
	Oversize *schemas.Oversize
	// Op and Seq are the kanal.op and kanal.seq headers.
	Op  string
	Seq uint64
}

// ReadAll reads, with read_committed, every record of the topics matching re that is
// below the stable end at the time of the call, in partition order. It fails the test
// if that takes longer than timeout.
//
// Avro records are decoded with the schemas of the "kanal._schemas" topic; use
// ReadAllWith for another resolver (a schema registry).
func ReadAll(t testing.TB, brokers []string, re string, timeout time.Duration) []Record {
	t.Helper()
	res := schemastore.NewTopicSchemas(kafkaconn.Config{Brokers: brokers, TopicPrefix: kafkaconn.DefaultTopicPrefix}, nil)
	defer res.Close()
	return ReadAllWith(t, brokers, re, timeout, &schemastore.Resolver{Topic: res})
}

// ReadAllWith is ReadAll with the given resolver of Avro writer schemas.
func ReadAllWith(t testing.TB, brokers []string, re string, timeout time.Duration, sr schemas.SchemaResolver) []Record {
	t.Helper()
	dec := schemas.NewDecoder()
	dec.Schemas = sr
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	ac := kadm.NewClient(adm)
	topics, err := ac.ListTopics(ctx)
	if err != nil {
		t.Fatalf("list topics: %v", err)
	}
	rx := regexp.MustCompile(re)
	var names []string
	for _, name := range topics.Names() {
		if rx.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	ends, err := ac.ListCommittedOffsets(ctx, names...)
	if err != nil {
		t.Fatalf("list committed offsets: %v", err)
	}
	want := map[string]map[int32]int64{}
	parts := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if want[o.Topic] == nil {
				want[o.Topic] = map[int32]int64{}
				parts[o.Topic] = map[int32]kgo.Offset{}
			}
			want[o.Topic][o.Partition] = o.Offset
			parts[o.Topic][o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(parts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []Record
	remaining := 0
	for _, ps := range want {
		remaining += len(ps)
	}
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("ReadAll(%s): timed out with %d partitions unread", re, remaining)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			end := want[r.Topic][r.Partition]
			if r.Offset >= end {
				return
			}
			if r.Offset == end-1 {
				remaining--
			}
			if r.Attrs.IsControl() {
				return
			}
			rec := Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key), Tombstone: r.Value == nil,
				Headers: map[string]string{}, Value: r.Value}
			for _, h := range r.Headers {
				rec.Headers[h.Key] = string(h.Value)
				switch h.Key {
				case schemas.HeaderOp:
					rec.Op = string(h.Value)
				case schemas.HeaderSeq:
					rec.Seq, _ = strconv.ParseUint(string(h.Value), 10, 64)
				}
			}
			if !rec.Tombstone && !strings.Contains(r.Topic, "._") {
				format := ""
				for _, h := range r.Headers {
					if h.Key == schemas.HeaderFormat {
						format = string(h.Value)
					}
				}
				cs, err := dec.DecodeContext(ctx, format, r.Value)
				var oe *schemas.OversizeError
				if errors.As(err, &oe) {
					rec.Oversize = &oe.Oversize
					out = append(out, rec)
					return
				}
				if err != nil {
					t.Fatalf("decode %s/%d@%d: %v", r.Topic, r.Partition, r.Offset, err)
				}
				if len(cs) != 1 {
					t.Fatalf("%s/%d@%d: %d changes in one record", r.Topic, r.Partition, r.Offset, len(cs))
				}
				rec.Change = cs[0]
			}
			out = append(out, rec)
		})
	}
	return out
}

// Replay applies changes in offset order per partition and returns the resulting
// table image: key → row rendered by Render. A truncate removes the table's rows
// older than it. It fails the test when a key's changes
// arrive out of sequence order (per-key order is a kanal guarantee).
func Replay(t testing.TB, recs []Record) map[string]map[string]string {
	t.Helper()
	state := map[string]map[string]string{}
	lastSeq := map[string]uint64{}
	for _, r := range recs {
		if r.Tombstone {
			if _, ok := state[r.Key]; ok {
				t.Errorf("tombstone for %s while the row exists", r.Key)
			}
			continue
		}
		c := r.Change
		if c == nil {
			t.Errorf("%s/%d@%d: an oversize marker for %s: the replay cannot be exact", r.Topic, r.Partition, r.Offset, r.Key)
			continue
		}
		if got := c.Key(); got != r.Key {
			t.Errorf("%s/%d@%d: record key %q but change key %q", r.Topic, r.Partition, r.Offset, r.Key, got)
		}
		if c.Op == schemas.OpTruncate {
			// One record per partition: each removes the rows of the table
			// whose last change is older, as its partition's consumer would.
			prefix := c.Source.DB + "." + c.Source.Table + ":"
			for key := range state {
				if strings.HasPrefix(key, prefix) && lastSeq[key] < c.Seq {
					delete(state, key)
				}
			}
			continue
		}
		if c.Seq != 0 && c.Seq <= lastSeq[r.Key] {
			t.Errorf("key %s: seq %d after %d: out of order", r.Key, c.Seq, lastSeq[r.Key])
		}
		lastSeq[r.Key] = c.Seq
		switch c.Op {
		case schemas.OpCreate, schemas.OpUpdate, schemas.OpRead:
			state[r.Key] = RenderRow(c.After)
		case schemas.OpDelete:
			delete(state, r.Key)
		}
	}
	return state
}

// RenderRow renders a change's row as text per column, the way SourceRows renders
// the source table, so that the two compare with ==.
func RenderRow(row map[string]any) map[string]string {
	out := make(map[string]string, len(row))
	for k, v := range row {
		out[k] = Render(v)
	}
	return out
}

// Render renders one kanal value as text: NULL as "NULL", bytes as hex.
func Render(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return fmt.Sprintf("0x%x", x)
	case schemas.Decimal:
		return string(x)
	default:
		return fmt.Sprint(x)
	}
}

// RenderJSON renders a row a sink stored as a JSON object (decoded with
// json.Decoder.UseNumber: numbers as json.Number) like RenderRow, so it compares
// with SourceRows: NULL as "NULL", bytes columns (the sinks write them as
// base64 strings) as 0x-hex, numbers as their JSON text.
func RenderJSON(doc map[string]any, binaryCols ...string) (map[string]string, error) {
	out := make(map[string]string, len(doc))
	for k, v := range doc {
		switch x := v.(type) {
		case nil:
			out[k] = "NULL"
		case string:
			if slices.Contains(binaryCols, k) {
				b, err := base64.StdEncoding.DecodeString(x)
				if err != nil {
					return nil, fmt.Errorf("field %s: %w", k, err)
				}
				x = fmt.Sprintf("0x%x", b)
			}
			out[k] = x
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out, nil
}

// SourceRows reads db.table from MySQL and returns key → row rendered like Render.
// keyOf builds the kanal key from the rendered row; binaryCols lists columns whose
// values are bytes (rendered as hex).
func SourceRows(t testing.TB, db *sql.DB, table string, keyOf func(map[string]string) string, binaryCols ...string) map[string]map[string]string {
	t.Helper()
	out, err := ReadRows(context.Background(), db, "SELECT * FROM "+table, keyOf, binaryCols...)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	return out
}

// ReadRows runs query and returns its rows rendered as text like Render (NULL as
// "NULL", the columns listed in binaryCols as 0x-hex), keyed by keyOf: how tests
// read a source or a target table to compare it.
func ReadRows(ctx context.Context, db *sql.DB, query string, keyOf func(map[string]string) string, binaryCols ...string) (map[string]map[string]string, error) {
	isBin := map[string]bool{}
	for _, c := range binaryCols {
		isBin[c] = true
	}
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := map[string]string{}
		for i, c := range cols {
			switch {
			case vals[i] == nil:
				row[c] = "NULL"
			case isBin[c]:
				row[c] = fmt.Sprintf("0x%x", []byte(vals[i]))
			default:
				row[c] = string(vals[i])
			}
		}
		out[keyOf(row)] = row
	}
	return out, rows.Err()
}

// OpenDB opens a database/sql handle, closed when the test ends. The caller
// imports the driver.
func OpenDB(t testing.TB, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
