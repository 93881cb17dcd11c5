package producer_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestTableTopicSettings: table topics kanal creates are compacted with
// min.compaction.lag.ms = kafka.min_compaction_lag (7 days by default), so a
// replay from earliest sees every recent change, not only each row's latest; an
// existing table topic with other settings is logged at start, never left on
// them silently (other prefixes' topics are not kanal's), and AlterTableTopics
// (`kanal topics alter`) brings it in line.
func TestTableTopicSettings(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adm := kadm.NewClient(k.Client(t))
	compact := "compact"
	for _, topic := range []string{"kanal.wl.old", "other.wl.old", "kanal._dlq.g"} {
		if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, topic); err != nil {
			t.Fatal(err)
		}
	}
	// A topic that takes larger records than kanal writes is not a difference.
	lag, roomy := "604800000", "67108864"
	if _, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact, "min.compaction.lag.ms": &lag,
		"max.message.bytes": &roomy}, "kanal.wl.roomy"); err != nil {
		t.Fatal(err)
	}
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.fresh (id INT PRIMARY KEY)")
	m.Exec(t, "INSERT INTO wl.fresh VALUES (1)")

	cfg := cdctest.ProducerConfig(m, k, "topics")
	def := producer.DefaultConfig()
	cfg.Kafka.CleanupPolicy, cfg.Kafka.MinCompactionLag = def.Kafka.CleanupPolicy, def.Kafka.MinCompactionLag
	logs := &syncBuffer{}
	p, err := producer.New(cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() { pcancel(); <-done }()
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, "topics", func() error { return nil })

	rcs, err := adm.DescribeTopicConfigs(ctx, "kanal.wl.fresh")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rcs[0].Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["cleanup.policy"] != "compact" || got["min.compaction.lag.ms"] != "604800000" {
		t.Errorf("kanal.wl.fresh created with cleanup.policy=%q min.compaction.lag.ms=%q, want compact and 7 days",
			got["cleanup.policy"], got["min.compaction.lag.ms"])
	}

	var warned []string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "existing table topic differs from the configuration") {
			warned = append(warned, l)
		}
	}
	// The topic was created with the broker's max.message.bytes (1 MiB), below
	// what kafka.max_record_bytes needs, and without a compaction lag.
	want := []string{"setting=max.message.bytes topic_value=1048588", "setting=min.compaction.lag.ms topic_value=0"}
	if len(warned) != len(want) {
		t.Errorf("start-up warnings about existing topics: %q", warned)
	}
	for i := range min(len(warned), len(want)) {
		if !strings.Contains(warned[i], "topic=kanal.wl.old") || !strings.Contains(warned[i], want[i]) || !strings.Contains(warned[i], "level=WARN") {
			t.Errorf("start-up warning %q, want one with %s", warned[i], want[i])
		}
	}

	drifts, err := producer.CheckTableTopics(ctx, adm, &cfg.Kafka, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(drifts) != 2 || drifts[0].Topic != "kanal.wl.old" || drifts[0].Key != "max.message.bytes" ||
		drifts[1].Topic != "kanal.wl.old" || drifts[1].Key != "min.compaction.lag.ms" {
		t.Fatalf("drifts %v", drifts)
	}
	if err := producer.AlterTableTopics(ctx, adm, drifts); err != nil {
		t.Fatal(err)
	}
	if drifts, err := producer.CheckTableTopics(ctx, adm, &cfg.Kafka, nil); err != nil || len(drifts) != 0 {
		t.Errorf("after AlterTableTopics: %v %v", drifts, err)
	}
}
