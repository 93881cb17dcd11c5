package essink_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/schemas"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// config is a configuration for the cluster at url with the given tables.
func config(url string, tables ...essink.TableConfig) essink.Config {
	cfg := essink.DefaultConfig()
	cfg.URLs = []string{url}
	cfg.Tables = tables
	cfg.Retry = essink.RetryConfig{MaxAttempts: 5, InitialInterval: 5 * time.Millisecond, MaxInterval: 50 * time.Millisecond}
	return cfg
}

func newHandler(t testing.TB, cfg essink.Config) *essink.Handler {
	t.Helper()
	h, err := essink.New(cfg, cdctest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// cluster reads documents back over HTTP, from the in-test server or a real
// cluster.
type cluster struct {
	url        string
	user, pass string
}

func (c cluster) call(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctxT(t), method, strings.TrimRight(c.url, "/")+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// hit is a document found by search.
type hit struct {
	index, id string
	source    map[string]any // numbers as json.Number
}

// search refreshes the indexes matching pattern and returns every document.
func (c cluster) search(t testing.TB, pattern string) []hit {
	t.Helper()
	if st, body := c.call(t, http.MethodPost, "/"+pattern+"/_refresh?ignore_unavailable=true&allow_no_indices=true", nil); st/100 != 2 && st != 404 {
		t.Fatalf("refresh %s: %d %s", pattern, st, body)
	}
	st, body := c.call(t, http.MethodPost, "/"+pattern+"/_search?ignore_unavailable=true&allow_no_indices=true",
		map[string]any{"size": 10000, "query": map[string]any{"match_all": map[string]any{}}})
	if st == 404 {
		return nil
	}
	if st/100 != 2 {
		t.Fatalf("search %s: %d %s", pattern, st, body)
	}
	var resp struct {
		Hits struct {
			Hits []struct {
				Index  string          `json:"_index"`
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	var out []hit
	for _, h := range resp.Hits.Hits {
		dec := json.NewDecoder(bytes.NewReader(h.Source))
		dec.UseNumber()
		var src map[string]any
		if err := dec.Decode(&src); err != nil {
			t.Fatal(err)
		}
		out = append(out, hit{h.Index, h.ID, src})
	}
	return out
}

// render renders a document's fields like cdctest.Render; binary columns are
// decoded from base64 into 0x-hex.
func render(t testing.TB, src map[string]any, binary map[string]bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range src {
		if k == essink.FieldMeta {
			continue
		}
		switch x := v.(type) {
		case nil:
			out[k] = "NULL"
		case string:
			if binary[k] {
				b, err := base64.StdEncoding.DecodeString(x)
				if err != nil {
					t.Fatalf("field %s: %v", k, err)
				}
				x = fmt.Sprintf("0x%x", b)
			}
			out[k] = x
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	return out
}

// orderCols is the synthetic table t.orders.
var orderCols = []schemas.Column{
	{Name: "id", Type: "bigint", PK: true},
	{Name: "note", Type: "text"},
	{Name: "created", Type: "datetime"},
	{Name: "secret", Type: "varchar"},
}

func orderRow(id int64, note any, created string) map[string]any {
	return map[string]any{"id": id, "note": note, "created": created, "secret": "s3cr3t"}
}

func change(table string, cols []schemas.Column, op schemas.Op, seq uint64, before, after map[string]any) *schemas.Change {
	return &schemas.Change{Op: op, Seq: seq, Columns: cols, Before: before, After: after,
		Source: schemas.Source{Name: "src", File: "binlog.000001", Pos: uint32(seq), DB: "t", Table: table}}
}

// rec makes the record the Runner would deliver for c at offset off.
func rec(c *schemas.Change, off int64) consumer.Record {
	return consumer.Record{Topic: "kanal." + c.Table(), Offset: off, Key: c.Key(), Table: c.Table(), Op: c.Op, Seq: c.Seq, Change: c}
}

func tomb(key string, seq uint64, off int64) consumer.Record {
	table, _, _ := strings.Cut(key, ":")
	return consumer.Record{Topic: "kanal." + table, Offset: off, Key: key, Table: table, Op: schemas.OpDelete, Tombstone: true, Seq: seq}
}

func handle(t testing.TB, h consumer.Handler, recs ...consumer.Record) {
	t.Helper()
	if err := h.Handle(ctxT(t), consumer.Batch{Topic: recs[0].Topic, Records: recs}); err != nil {
		t.Fatalf("Handle: %v", err)
	}
}
