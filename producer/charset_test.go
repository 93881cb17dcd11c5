package producer_test

import (
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

// TestTextByCharset writes a row with a text column in every character set kanal
// decodes (and ENUM/SET labels in others than the table's) and checks, in the
// kanal JSON, canal-json and Avro formats, that every text value of every record is
// byte for byte what the server's own CONVERT(col USING utf8mb4) returns, for
// inserts, both images of updates, and deletes.
func TestTextByCharset(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE cs")
	// cs.t has GEOMETRY, SET and JSON columns, so its rows take go-mysql's
	// decoder and convert; cs.f has none, and its rows take rowDecoder's path.
	oracle := map[string][]step{}
	for _, table := range []string{"cs.t", "cs.f"} {
		cdctest.CreateCharsetTable(t, m.DB(), table, table == "cs.f")
		cdctest.InsertCharsetRow(t, m.DB(), table, 1, "café", 0)
		cdctest.InsertCharsetRow(t, m.DB(), table, 2, "Ärger €", 5)
		before := cdctest.ServerText(t, m.DB(), table)
		// A delete, an update of every column (both images are checked), and a
		// key change.
		m.Exec(t, "DELETE FROM "+table+" WHERE id = 2")
		cdctest.InsertCharsetRow(t, m.DB(), table, 2, "Ärger €", 11)
		m.Exec(t, "UPDATE "+table+" AS a JOIN "+table+" AS b ON a.id = 1 AND b.id = 2 SET "+
			setAll(cdctest.CharsetTextColumns(t, m.DB(), table)))
		mid := cdctest.ServerText(t, m.DB(), table)
		m.Exec(t, "UPDATE "+table+" SET k = 'naïve' WHERE id = 2")
		final := cdctest.ServerText(t, m.DB(), table)
		oracle[table] = []step{
			{schemas.OpCreate, nil, before["1,café"]},
			{schemas.OpCreate, nil, before["2,Ärger €"]},
			{schemas.OpDelete, before["2,Ärger €"], nil},
			{schemas.OpCreate, nil, mid["2,Ärger €"]},
			{schemas.OpUpdate, before["1,café"], mid["1,café"]},
			{schemas.OpDelete, mid["2,Ärger €"], nil}, // the key change
			{schemas.OpCreate, nil, final["2,naïve"]},
		}
	}
	for _, table := range []string{"cs.t", "cs.f"} {
		for _, format := range []string{schemas.FormatJSON, schemas.FormatCanalJSON, schemas.FormatAvro} {
			t.Run(table+"/"+format, func(t *testing.T) {
				name := strings.ReplaceAll(table, ".", "") + format
				cfg := cdctest.ProducerConfig(m, k, name)
				cfg.Kafka.TopicPrefix = name
				cfg.Kafka.Format = format
				cfg.Tables.Include = []string{table}
				r := cdctest.StartProducer(t, cfg)
				r.CaughtUp(t, m.DB())
				// Avro writer schemas are on this prefix's _schemas topic.
				res := &schemastore.Resolver{Topic: schemastore.NewTopicSchemas(kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: name}, nil)}
				recs := cdctest.ReadAllWith(t, k.Brokers, "^"+regexp.QuoteMeta(name+"."+table)+"$", time.Minute, res)
				checkSteps(t, recs, oracle[table], len(cdctest.CharsetTextColumns(t, m.DB(), table)))
				if n := r.P.Stats().InvalidText.Load(); n != 0 {
					t.Errorf("%d values counted as invalid text", n)
				}
				slow := r.P.Stats().SlowRowsEvents.Load()
				if table == "cs.f" && slow != 0 || table == "cs.t" && slow == 0 {
					t.Errorf("%d rows events of %s left to go-mysql's decoder", slow, table)
				}
			})
		}
	}
}

// step is one change the charset test expects, with the server's text of its
// images.
type step struct {
	op            schemas.Op
	before, after map[string]string
}

// setAll is a SET clause copying every column of b to a.
func setAll(cols []string) string {
	var sets []string
	for _, c := range cols {
		if c != "k" {
			sets = append(sets, "a.`"+c+"` = b.`"+c+"`")
		}
	}
	return strings.Join(sets, ", ")
}

// checkSteps compares the changes of recs, in kanal.seq order (canal-json has
// no sequence of its own), with the expected steps, text column by text column.
func checkSteps(t *testing.T, recs []cdctest.Record, steps []step, ncols int) {
	t.Helper()
	seqs := map[*schemas.Change]uint64{}
	var changes []*schemas.Change
	for _, rec := range recs {
		if rec.Change != nil {
			changes = append(changes, rec.Change)
			seqs[rec.Change], _ = strconv.ParseUint(rec.Headers[schemas.HeaderSeq], 10, 64)
			if _, ok := rec.Headers[schemas.HeaderInvalidText]; ok {
				t.Errorf("record %s marked invalid: %v", rec.Key, rec.Headers)
			}
		}
	}
	sort.Slice(changes, func(i, j int) bool { return seqs[changes[i]] < seqs[changes[j]] })
	if len(changes) != len(steps) {
		t.Fatalf("%d changes, want %d", len(changes), len(steps))
	}
	for i, st := range steps {
		c := changes[i]
		if c.Op != st.op {
			t.Fatalf("change %d: op %s, want %s", i, c.Op, st.op)
		}
		for _, img := range []struct {
			name string
			got  map[string]any
			want map[string]string
		}{{"before", c.Before, st.before}, {"after", c.After, st.after}} {
			if img.want == nil {
				continue
			}
			if len(img.want) != ncols {
				t.Fatalf("server text has %d columns, want %d", len(img.want), ncols)
			}
			for col, want := range img.want {
				got, ok := img.got[col].(string)
				if !ok || got != want {
					t.Errorf("change %d (%s %s) %s column %s: got %q (%T), server says %q",
						i, c.Op, c.Key(), img.name, col, img.got[col], img.got[col], want)
				}
			}
		}
	}
}

// TestUnsupportedCharsetRefused: a captured column in a character set kanal
// cannot decode stops the producer at its table map, naming the table, the
// column and the character set; the same column in an excluded table does not.
func TestUnsupportedCharsetRefused(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE uc")
	m.Exec(t, "CREATE TABLE uc.old (id INT PRIMARY KEY, name VARCHAR(20) CHARACTER SET swe7)")
	m.Exec(t, "CREATE TABLE uc.ok (id INT PRIMARY KEY, name VARCHAR(20) CHARACTER SET latin1)")
	m.Exec(t, "INSERT INTO uc.old VALUES (1, 'abc')")
	m.Exec(t, "INSERT INTO uc.ok VALUES (1, 'caf\u00e9')")

	cfg := cdctest.ProducerConfig(m, k, "uc-skip")
	cfg.Kafka.TopicPrefix = "ucskip"
	cfg.Tables.Include = []string{"uc.*"}
	cfg.Tables.Exclude = []string{"uc.old"}
	r := cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, m.DB())
	if recs := cdctest.ReadAll(t, k.Brokers, `^ucskip\.uc\.ok$`, time.Minute); len(recs) != 1 || recs[0].Change.After["name"] != "café" {
		t.Errorf("uc.ok: %+v", recs)
	}

	cfg = cdctest.ProducerConfig(m, k, "uc")
	cfg.Tables.Include = []string{"uc.*"}
	r = cdctest.StartProducer(t, cfg)
	err := r.Wait(t, time.Minute)
	if !errors.Is(err, producer.ErrCharset) {
		t.Fatalf("producer stopped with %v, want ErrCharset", err)
	}
	for _, want := range []string{"uc.old column name", "swe7", "tables.exclude", "CONVERT TO CHARACTER SET utf8mb4"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
