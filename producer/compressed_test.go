package producer_test

import (
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestCompressedBinlog: with MariaDB's log_bin_compress, row events arrive as
// *_COMPRESSED_EVENT_V1 types; every change must still be written, exactly once.
func TestCompressedBinlog(t *testing.T) {
	m := testenv.MariaDB(t, testenv.WithArgs("--log-bin-compress=ON", "--log-bin-compress-min-len=10"))
	k := testenv.Kafka(t)
	cfg := cdctest.ProducerConfig(m, k, "compressed")
	cfg.Tables.Include = []string{"wl.*"}
	w := cdctest.NewWorkload(t, m.DB(), 7)
	r := cdctest.StartProducer(t, cfg)
	for i := 0; i < 40; i++ {
		w.Step(t)
		if i == 20 {
			w.Bulk(t, 300)
		}
	}
	r.CaughtUp(t, m.DB())
	recs := cdctest.ReadAll(t, k.Brokers, topicsRE("kanal", "wl"), time.Minute)
	n := cdctest.CheckExactlyOnce(t, recs)
	cdctest.CheckTables(t, m.DB(), recs)
	if n < 300 {
		t.Errorf("only %d changes", n)
	}
}
