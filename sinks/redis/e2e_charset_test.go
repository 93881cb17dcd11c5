package redissink_test

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
)

// TestEndToEndCharsets: a table with a text column in every character set kanal
// decodes (and a latin1 part of the primary key) goes through the producer and
// the Redis handler; every hash field equals, byte for byte, what the server's
// CONVERT(col USING utf8mb4) returns, and the secondary sets are named by the
// decoded text of a latin1 ENUM.
func TestEndToEndCharsets(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	rs := testenv.Redis(t)
	m.Exec(t, "CREATE DATABASE cs")
	cdctest.CreateCharsetTable(t, m.DB(), "cs.t", false)
	cdctest.InsertCharsetRow(t, m.DB(), "cs.t", 1, "café", 0)
	cdctest.InsertCharsetRow(t, m.DB(), "cs.t", 2, "Ärger €", 5)
	cdctest.InsertCharsetRow(t, m.DB(), "cs.t", 3, "Zürich", 9)
	m.Exec(t, "UPDATE cs.t SET k = 'naïve', e = 'café' WHERE id = 2") // a key change
	m.Exec(t, "DELETE FROM cs.t WHERE id = 3")

	sink := redissink.DefaultConfig()
	sink.Instances = map[string]redissink.InstanceConfig{"main": {Addr: rs.Addr}}
	sink.Tables = []redissink.TableConfig{{Match: "cs.t", Instances: []string{"main"}, Sets: []redissink.SetConfig{{Key: "s:{e}"}}}}
	rd, err := redissink.NewReader(sink)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	pcfg := cdctest.ProducerConfig(m, k, "redis-cs")
	pcfg.Tables.Include = []string{"cs.*"}
	p := &pipeline{t: t, m: m, k: k, pcfg: pcfg, sink: sink, rd: rd}
	p.startProducer()
	p.startRunner("redis-cs")
	cdctest.WaitCaughtUp(t, m.DB(), &pcfg.Kafka, pcfg.Source.Name, nil)
	adm := kadm.NewClient(k.Client(t))
	deadline := time.Now().Add(90 * time.Second)
	for lag := p.lag(adm, regexp.MustCompile(`^kanal\.cs\.t$`), []string{"redis-cs"}); lag != ""; lag = p.lag(adm, regexp.MustCompile(`^kanal\.cs\.t$`), []string{"redis-cs"}) {
		if time.Now().After(deadline) {
			t.Fatalf("the Redis handler did not catch up within 90s: %s", lag)
		}
		time.Sleep(50 * time.Millisecond)
	}

	want := cdctest.ServerText(t, m.DB(), "cs.t")
	got := map[string]map[string]string{}
	for _, row := range p.image("cs.t") {
		got[row["id"]+","+row["k"]] = row
	}
	if len(got) != len(want) || len(want) != 2 {
		t.Fatalf("%d rows in Redis, %d in the source, want 2", len(got), len(want))
	}
	for key, cols := range want {
		g, ok := got[key]
		if !ok {
			t.Errorf("row %s missing in Redis (have %v)", key, keys(got))
			continue
		}
		for col, w := range cols {
			if g[col] != w {
				t.Errorf("row %s column %s: Redis has %q, the server says %q", key, col, g[col], w)
			}
		}
	}
	ms, err := rd.SetMembers(ctxT(t), "cs.t", "s:café")
	if err != nil || len(ms) != 2 {
		t.Errorf("set s:café: %v %v, want the two rows whose e is café", ms, err)
	}
}

func keys(m map[string]map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, fmt.Sprintf("%q", k))
	}
	return out
}
