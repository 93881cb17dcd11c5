package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/schemas"
)

func TestIsTableTopic(t *testing.T) {
	for topic, want := range map[string]bool{
		"kanal.shop.orders": true, "kanal._positions": false, "kanal._dlq.g": false, "kanal.shop": false,
		"other.shop.orders": false, "kanal.shop.a.b": false, "kanal._schemas": false,
	} {
		if got := isTableTopic("kanal", topic); got != want {
			t.Errorf("isTableTopic(%s) = %v", topic, got)
		}
	}
}

func TestWriteText(t *testing.T) {
	lag, behind, files, mb := 1.5, int64(2048), 2, int64(3<<20)
	fresh := 0.25
	r := &Report{GeneratedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Prefix: "kanal",
		Sources: []Source{{Name: "shop", Active: &Member{Instance: "db1-42"}, Standbys: []Member{{Instance: "db2-7"}},
			Election: "Stable", Position: &schemas.Position{File: "binlog.000003", Pos: 1234, Seq: 99},
			LagSeconds: &lag, BytesBehind: &behind, RetentionMarginFiles: &files, RetentionMarginBytes: &mb}},
		Groups: []Group{{Name: "kanal-redis", State: "Stable", Members: []Member{{Instance: "c1"}}, DeadLetters: 3,
			Tables: []Table{{Table: "shop.orders", LagRecords: 7, FreshnessSeconds: &fresh, Halted: 1}},
			Halted: []schemas.StatusHalted{{Handler: "redis", Topic: "kanal.shop.orders", Partition: 2, Offset: 40, Table: "shop.orders", Key: "shop.orders:5", Error: "boom"}}}},
	}
	var b bytes.Buffer
	if err := WriteText(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"db1-42", "binlog.000003:1234", "1.5s", "2.0 KiB", "2 files, 3.0 MiB",
		"GROUP kanal-redis", "dead letters 3", "shop.orders  7", "halted: handler redis at kanal.shop.orders/2@40 (table shop.orders, key shop.orders:5)"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}
