package producer

import (
	"testing"
	"time"
)

func TestBytesBehindAndRetentionMargin(t *testing.T) {
	files := []binlogFile{{"b.000003", 1000}, {"b.000004", 2000}, {"b.000005", 500}}
	for _, tc := range []struct {
		file string
		pos  uint32
		want int64
	}{
		{"b.000005", 500, 0},
		{"b.000005", 100, 400},
		{"b.000004", 1500, 500 + 500},
		{"b.000003", 4, 996 + 2000 + 500},
		{"b.000002", 4, -1},
		{"b.000005", 900, 0}, // read beyond the polled end: nothing behind
	} {
		if got := bytesBehind(files, tc.file, tc.pos); got != tc.want {
			t.Errorf("bytesBehind(%s:%d) = %d, want %d", tc.file, tc.pos, got, tc.want)
		}
	}
	for _, tc := range []struct {
		file      string
		want      retention
		warnBelow int
		warn      bool
	}{
		{"b.000003", retention{files: 0, bytes: 0}, 1, true},
		{"b.000004", retention{files: 1, bytes: 1000}, 1, false},
		{"b.000004", retention{files: 1, bytes: 1000}, 2, true},
		// The newest file is never purged: no warning however few files are older.
		{"b.000005", retention{files: 2, bytes: 3000, newest: true}, 5, false},
		{"b.000001", retention{files: -1, bytes: -1}, 0, true},
	} {
		got := retentionMargin(files, tc.file)
		if got != tc.want {
			t.Errorf("retentionMargin(%s) = %+v, want %+v", tc.file, got, tc.want)
		}
		if w := got.warn(tc.warnBelow); w != tc.warn {
			t.Errorf("retentionMargin(%s).warn(%d) = %v, want %v", tc.file, tc.warnBelow, w, tc.warn)
		}
	}
	// A server with a single binlog: the position is in the newest file.
	if r := retentionMargin(files[2:], "b.000005"); r.warn(1) {
		t.Errorf("a position in the only binlog warns: %+v", r)
	}
}

func TestBinlogFileNumber(t *testing.T) {
	for in, want := range map[string]uint64{"binlog.000042": 42, "mysql-bin.1": 1, "a.b.000007": 7} {
		if n, ok := binlogFileNumber(in); !ok || n != want {
			t.Errorf("binlogFileNumber(%q) = %d %v, want %d", in, n, ok, want)
		}
	}
	if _, ok := binlogFileNumber("nodot"); ok {
		t.Error("binlogFileNumber(nodot) ok")
	}
}

// TestLagKeptHonestWhenIdle: the lag counts from the later of the last
// event's time and the last time the producer knew it was caught up.
func TestLagKeptHonestWhenIdle(t *testing.T) {
	now := time.Now()
	pr := Progress{ReadTs: now.Add(-time.Hour)}
	if lag, ok := pr.Lag(now); !ok || lag != time.Hour {
		t.Errorf("lag %v %v, want 1h", lag, ok)
	}
	pr.CaughtUpAt = now.Add(-2 * time.Second)
	if lag, _ := pr.Lag(now); lag != 2*time.Second {
		t.Errorf("lag %v after catching up 2s ago, want 2s", lag)
	}
	if _, ok := (Progress{}).Lag(now); ok {
		t.Error("lag known without any event")
	}
	pr = Progress{ReadTs: now.Add(time.Minute)} // the source's clock is ahead
	if lag, _ := pr.Lag(now); lag != 0 {
		t.Errorf("lag %v with a source clock ahead, want 0", lag)
	}
}
