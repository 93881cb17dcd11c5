package aggregators

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestTextInOtherCharsets: a source table whose group and filter columns are
// latin1, gbk and big5 text and a latin1 ENUM; summaries filter with non-ASCII
// literals ('华东', 'gelöscht') and group by that text. After random inserts,
// updates and deletes each summary equals the source's own GROUP BY, read as
// UTF-8: the text arrived decoded by its character set.
func TestTextInOtherCharsets(t *testing.T) {
	t.Parallel()
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	pg := postgresTarget(t)
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, `CREATE TABLE shop.sales (
		id INT PRIMARY KEY,
		city VARCHAR(40) CHARACTER SET latin1 NOT NULL,
		region VARCHAR(40) CHARACTER SET gbk NOT NULL,
		shop TEXT CHARACTER SET big5 NOT NULL,
		status ENUM('offen', 'bezahlt', 'gelöscht') CHARACTER SET latin1 NOT NULL,
		amount DECIMAL(12,2) NOT NULL) CHARACTER SET utf8mb4`)
	cfg := cdctest.ProducerConfig(m, k, "sales")
	cfg.Tables.Include = []string{"shop.*"}
	prod := cdctest.StartProducer(t, cfg)

	summaries := []struct {
		cfg   SummaryConfig
		query string
	}{
		{SummaryConfig{Table: "east_by_city", Source: "shop.sales", Where: "region = '华东' AND status != 'gelöscht'",
			GroupBy: []string{"city"}, Measures: []string{"count", "sum(amount)"}},
			"SELECT city, COUNT(*), SUM(amount) FROM shop.sales WHERE region = '华东' AND status <> 'gelöscht' GROUP BY city"},
		{SummaryConfig{Table: "deleted_by_region_shop", Source: "shop.sales", Where: "status = 'gelöscht' OR city IN ('Zürich', 'São Paulo')",
			GroupBy: []string{"region", "shop"}, Measures: []string{"count", "sum(amount)"}},
			"SELECT region, shop, COUNT(*), SUM(amount) FROM shop.sales WHERE status = 'gelöscht' OR city IN ('Zürich', 'São Paulo') GROUP BY region, shop"},
	}
	acfg := pg.config("cs")
	for i := range summaries {
		summaries[i].cfg.Table = "cs_" + summaries[i].cfg.Table
		acfg.Summaries = append(acfg.Summaries, summaries[i].cfg)
	}
	a, err := New(acfg, cdctest.Logger(t)) // the offsets table exists before the wait below reads it
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.Close()
	startMember(t, k.Brokers, acfg)

	cities := []string{"Zürich", "Köln", "São Paulo", "Besançon", "Plain"}
	regions := []string{"华东", "华南", "西北", "东北"}
	shops := []string{"臺北一號店", "高雄店", "新竹"}
	statuses := []string{"offen", "bezahlt", "gelöscht"}
	rng := rand.New(rand.NewPCG(5, 6))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	ids := map[int]bool{}
	for i := 0; i < 300; i++ {
		id := 1 + rng.IntN(120)
		switch {
		case !ids[id]:
			m.Exec(t, "INSERT INTO shop.sales VALUES (?, ?, ?, ?, ?, ?)", id, pick(cities), pick(regions), pick(shops), pick(statuses),
				fmt.Sprintf("%d.%02d", rng.IntN(500), rng.IntN(100)))
			ids[id] = true
		case rng.IntN(5) == 0:
			m.Exec(t, "DELETE FROM shop.sales WHERE id = ?", id)
			delete(ids, id)
		default:
			m.Exec(t, "UPDATE shop.sales SET city = ?, region = ?, status = ?, amount = amount + 1 WHERE id = ?",
				pick(cities), pick(regions), pick(statuses), id)
		}
	}
	prod.CaughtUp(t, m.DB())
	want := map[int32]int64{}
	for _, r := range cdctest.ReadAll(t, k.Brokers, `^kanal\.shop\.sales$`, time.Minute) {
		want[r.Partition] = max(want[r.Partition], r.Offset+1)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := map[int32]int64{}
		for p, n := range queryText(t, pg.db, "SELECT kafka_partition, next_offset FROM kanal_offsets WHERE consumer_group = 'kanal-cs' AND topic = 'kanal.shop.sales'", 1) {
			var pi int32
			var ni int64
			fmt.Sscan(p, &pi)
			fmt.Sscan(n, &ni)
			got[pi] = ni
		}
		done := true
		for p, off := range want {
			done = done && got[p] >= off
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the aggregator did not apply every change within 2 minutes: stored %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, s := range summaries {
		compiled, err := s.cfg.Compile()
		if err != nil {
			t.Fatal(err)
		}
		want := queryText(t, m.DB(), s.query, len(compiled.GroupBy))
		got := readSummary(t, pg, &compiled)
		if d := testdiff.Diff(want, got); d != "" {
			t.Fatalf("%s differs from the source's GROUP BY:\n%s", compiled.Table, d)
		}
		if len(want) < 3 {
			t.Fatalf("%s: only %d groups", compiled.Table, len(want))
		}
		t.Logf("%s: %d groups equal the source", compiled.Table, len(want))
	}
}
