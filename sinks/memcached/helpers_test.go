package memcachedsink_test

import (
	"bufio"
	"context"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/schemas"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// config is a configuration with one server and the given tables.
func config(addr string, tables ...memcachedsink.TableConfig) memcachedsink.Config {
	cfg := memcachedsink.DefaultConfig()
	cfg.Servers = []string{addr}
	cfg.Tables = tables
	return cfg
}

func newHandler(t testing.TB, cfg memcachedsink.Config) *memcachedsink.Handler {
	t.Helper()
	h, err := memcachedsink.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func newReader(t testing.TB, cfg memcachedsink.Config) *memcachedsink.Reader {
	t.Helper()
	rd, err := memcachedsink.NewReader(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}

// dumpKeys lists every key the server holds, tombstones included, with
// "lru_crawler metadump hash": it walks the hash table. "metadump all" walks the
// LRUs and misses items that move between them meanwhile (recently read ones):
// two dumps of an idle server differed, and rows seemed lost.
func dumpKeys(t testing.TB, addr string) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write([]byte("lru_crawler metadump hash\r\n")); err != nil {
		t.Fatal(err)
	}
	var keys []string
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "END" {
			return keys
		}
		if strings.HasPrefix(line, "ERROR") || strings.HasPrefix(line, "BUSY") {
			t.Fatalf("metadump: %s", line)
		}
		f, _, _ := strings.Cut(line, " ")
		k, ok := strings.CutPrefix(f, "key=")
		if !ok {
			continue
		}
		k, err := url.QueryUnescape(k)
		if err != nil {
			t.Fatalf("metadump key %q: %v", f, err)
		}
		keys = append(keys, k)
	}
	t.Fatalf("metadump: %v", sc.Err())
	return nil
}

// image reads every live row under keys starting with prefix, rendered like
// cdctest.Render (bytes columns decoded from base64 to 0x-hex), keyed by item key.
func image(t testing.TB, addr, prefix string, binary map[string]bool) map[string]map[string]string {
	t.Helper()
	mc := memcache.New(addr)
	defer mc.Close()
	var keys []string
	for _, k := range dumpKeys(t, addr) {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	out := map[string]map[string]string{}
	for i := 0; i < len(keys); i += 100 {
		items, err := mc.GetMulti(keys[i:min(i+100, len(keys))])
		if err != nil {
			t.Fatal(err)
		}
		for k, it := range items {
			row, ok, err := memcachedsink.Decode(it.Value)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			if !ok {
				continue
			}
			bin := make([]string, 0, len(binary))
			for c := range binary {
				bin = append(bin, c)
			}
			r, err := cdctest.RenderJSON(row.Values, bin...)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			out[k] = r
		}
	}
	return out
}

// orderCols is the synthetic table t.orders.
var orderCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "note", Type: "text"},
	{Name: "amount", Type: "decimal(12,2)"},
}

func change(op schemas.Op, seq uint64, id int64, note any) *schemas.Change {
	row := map[string]any{"id": id, "note": note, "amount": schemas.Decimal("1.50")}
	c := &schemas.Change{Op: op, Seq: seq, Source: schemas.Source{DB: "t", Table: "orders"}, Columns: orderCols}
	if op == schemas.OpDelete {
		c.Before = row
	} else {
		c.After = row
	}
	return c
}

// rec makes the record the Runner would deliver for c, at offset off.
func rec(c *schemas.Change, off int64) consumer.Record {
	return consumer.Record{Topic: "kanal.t.orders", Offset: off, Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
}

func handle(t testing.TB, h consumer.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: "kanal.t.orders", Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}
