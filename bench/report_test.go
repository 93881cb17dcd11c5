package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestMarkdownHeader: the report says how busy the machine was, and does not
// print a binlog size that no stage measured (a --stages run without stage 1).
func TestMarkdownHeader(t *testing.T) {
	r := &Report{
		Started:  time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC),
		Machine:  Machine{CPUs: 2, LoadStart: "0.52 1.10 2.30", LoadEnd: "1.90 1.40 2.20"},
		Workload: &Workload{RowChanges: 100},
	}
	var b bytes.Buffer
	r.Markdown(&b)
	out := b.String()
	for _, want := range []string{"0.52 1.10 2.30 at the start, 1.90 1.40 2.20 at the end", "binlog not measured (stage 1 not run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	r.Workload.BinlogBytes = 25_300_000
	b.Reset()
	r.Markdown(&b)
	if !strings.Contains(b.String(), "binlog 25.3 MB;") {
		t.Errorf("measured binlog size missing:\n%s", b.String())
	}
}
