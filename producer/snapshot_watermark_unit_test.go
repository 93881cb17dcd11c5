package producer

import (
	"errors"
	"strings"
	"testing"
)

// TestWatermarkMode: which way a chunk learns its snapshot's position, for each
// setting on a server with binlog_snapshot_position (MariaDB) and without (MySQL),
// and that the refusals name the settings to set.
func TestWatermarkMode(t *testing.T) {
	for _, c := range []struct {
		mode, table string
		has         bool
		want        string // "" = refused
	}{
		{"auto", "", true, watermarkPosition},
		{"auto", "kanal.wm", true, watermarkPosition},
		{"auto", "kanal.wm", false, watermarkTable},
		{"auto", "", false, ""},
		{"snapshot-position", "", true, watermarkPosition},
		{"snapshot-position", "kanal.wm", false, ""},
		{"table", "kanal.wm", true, watermarkTable},
		{"table", "kanal.wm", false, watermarkTable},
	} {
		cfg := &SourceConfig{SnapshotWatermark: c.mode, SignalTable: c.table}
		got, err := watermarkMode(cfg, c.has)
		if got != c.want {
			t.Errorf("%s, signal_table %q, snapshot position %v: %q (%v), want %q", c.mode, c.table, c.has, got, err, c.want)
		}
		if c.want == "" && (!errors.Is(err, errSnapshotUnsupported) || !strings.Contains(err.Error(), "source.signal_table") ||
			!strings.Contains(err.Error(), "MySQL")) {
			t.Errorf("%s without the snapshot position: %v, want an error naming source.signal_table", c.mode, err)
		}
	}
}

// TestCheckOrderCommits: the table watermark is refused on a MySQL server that
// may make transactions visible out of binlog order, naming the variable and
// the fix. (The MySQL-only path: no MySQL server runs in the tests.)
func TestCheckOrderCommits(t *testing.T) {
	for _, v := range []string{"1", "ON", "on"} {
		if err := checkOrderCommits(v, nil); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"0", "OFF", ""} {
		err := checkOrderCommits(v, nil)
		if !errors.Is(err, errWatermark) || !strings.Contains(err.Error(), "binlog_order_commits") || !strings.Contains(err.Error(), "SET GLOBAL binlog_order_commits = ON") {
			t.Errorf("%q: %v", v, err)
		}
	}
	if err := checkOrderCommits("", errors.New("lost")); !errors.Is(err, errWatermark) {
		t.Errorf("unreadable variable: %v", err)
	}
}

func TestSignalTableConfig(t *testing.T) {
	base := DefaultConfig()
	base.Source.Name, base.Source.Addr, base.Source.User = "s", "db:3306", "kanal"
	base.Kafka.Brokers = []string{"k:9092"}
	for _, c := range []struct {
		mode, table, bad string
	}{
		{"auto", "", ""},
		{"auto", "kanal.kanal_watermarks", ""},
		{"table", "kanal.kanal_watermarks", ""},
		{"snapshot-position", "", ""},
		{"table", "", "source.signal_table"},
		{"always", "", "source.snapshot_watermark"},
		{"auto", "kanal", "source.signal_table"},
		{"auto", "kanal.*", "source.signal_table"},
		{"auto", "a.b.c", "source.signal_table"},
		{"auto", "mysql.wm", "source.signal_table"},
		{"auto", "k.`wm`", "source.signal_table"},
	} {
		cfg := base
		cfg.Source.SnapshotWatermark, cfg.Source.SignalTable = c.mode, c.table
		err := cfg.Validate()
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%s %q: %v", c.mode, c.table, err)
		case c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad+":")):
			t.Errorf("%s %q: %v, want an error naming %s", c.mode, c.table, err, c.bad)
		}
	}
	// The signal table is never captured, whatever the patterns say.
	cfg := base
	cfg.Source.SignalTable = "kanal.kanal_watermarks"
	cfg.Tables.Include = []string{"kanal.*", "*.*"}
	f := captureFilter(&cfg)
	if f.match("kanal", "kanal_watermarks") || f.match("KANAL", "Kanal_Watermarks") || !f.match("kanal", "other") {
		t.Error("the signal table is captured, or its neighbours are not")
	}
}
