package producer_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	osexec "os/exec"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

const allTypesDDL = `CREATE TABLE ty.all_types (
	id INT NOT NULL PRIMARY KEY,
	ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
	mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED,
	bi BIGINT, biu BIGINT UNSIGNED,
	d65 DECIMAL(65,30), d2 DECIMAL(10,2), f FLOAT, db DOUBLE,
	dt DATE, dtm DATETIME, dtm3 DATETIME(3), dtm6 DATETIME(6), ts6 TIMESTAMP(6) NULL, ts TIMESTAMP NULL,
	tm TIME, tm6 TIME(6), tm1 TIME(1), tm2 TIME(2), tm3 TIME(3), tm4 TIME(4), tm5 TIME(5), y YEAR,
	c CHAR(10), vc VARCHAR(100), tx TEXT, mtx MEDIUMTEXT,
	bn BINARY(4), vb VARBINARY(20), bl BLOB, lbl LONGBLOB,
	bt BIT(10), b1 BIT(1), e ENUM('small','medium','large'), st SET('x','y','z'), j JSON
) CHARACTER SET utf8mb4`

// allTypesCols lists allTypesDDL's columns.
const allTypesCols = "id,ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d65,d2,f,db,dt,dtm,dtm3,dtm6,ts6,ts,tm,tm6,tm1,tm2,tm3,tm4,tm5,y,c,vc,tx,mtx,bn,vb,bl,lbl,bt,b1,e,st,j"

// insertAllTypes inserts TestEveryTypeGolden's rows into ty.all_types (TIMESTAMP
// literals are in the session's time zone, +03:00 there).
func insertAllTypes(exec func(string)) {
	const cols = allTypesCols
	exec("INSERT INTO ty.all_types (" + cols + ") VALUES (" +
		"1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, " +
		"9223372036854775807, 18446744073709551615, " +
		"'12345678901234567890123456789012345.123456789012345678901234567890', 99999999.99, 1.5, 2.718281828459045, " +
		"'9999-12-31', '9999-12-31 23:59:59', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789012', " +
		"'2024-02-29 12:34:56.789012', '2038-01-19 06:14:07', " +
		"'838:59:59', '-123:45:06.5', '-838:59:59.0', '-838:59:59.00', '25:00:00.5', '00:00:00', '-00:00:01.5', 2155, " +
		"'abc', 'héllo 🎉 世界 \"q\" \\\\ \\n', REPEAT('x', 1000), 'mtx', " +
		"X'61620000', X'00FF0001', X'DEADBEEF00', X'', " +
		"b'1010101010', b'1', 'large', 'x,z', '{\"a\": [1, 2.5, \"s\"], \"b\": null}')")
	exec("INSERT INTO ty.all_types (" + cols + ") VALUES (" +
		"2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, " +
		"-9223372036854775808, 0, " +
		"'-0.000000000000000000000000000001', -0.01, -3.4028234e38, -1.7976931348623157e308, " +
		"'1000-01-01', '1000-01-01 00:00:00', '1000-01-01 00:00:00.001', '1000-01-01 00:00:00.000001', " +
		"'1970-01-01 03:00:01.000001', '1970-01-01 03:00:01', " +
		"'-838:59:59', '00:00:00.000001', '00:00:00.0', '00:00:00.01', '-00:00:00.001', '100:00:00.0001', '-838:59:59.00000', 1901, " +
		"'', '', '', '', " +
		"X'00000000', X'', X'', X'00', " +
		"b'0', b'0', 'small', '', '[]')")
	exec("INSERT INTO ty.all_types (id) VALUES (3)")
	// TIME(fsp) keeps exactly fsp fractional digits when they are zero too.
	exec("INSERT INTO ty.all_types (id, tm, tm6, tm1, tm2, tm3, tm4, tm5) VALUES " +
		"(4, '-00:00:01', '-838:59:59', '838:59:59', '-25:00:00', '00:00:00', '-00:00:01', '34:56:07')")
}

// TestEveryTypeGolden inserts every MySQL column type into a real MariaDB, reads
// the changes back from the topic, and checks each value is exactly what was stored.
func TestEveryTypeGolden(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE ty")
	m.Exec(t, allTypesDDL)
	// TIMESTAMP literals are read in the session time zone; pin it so the
	// expected UTC values are known.
	conn, err := m.DB().Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exec := func(q string) {
		t.Helper()
		if _, err := conn.ExecContext(context.Background(), q); err != nil {
			t.Fatalf("%.80s…: %v", q, err)
		}
	}
	exec("SET time_zone = '+03:00'")
	const cols = allTypesCols
	insertAllTypes(exec)

	// The same rows through every format: the values must come out identical.
	reg := testenv.SchemaRegistry(t)
	for _, format := range schemas.Formats() {
		if format == schemas.FormatCanalJSON {
			continue // canal-json renders values as text (its own golden: schemas/canaljson_test.go)
		}
		t.Run(format, func(t *testing.T) {
			cfg := cdctest.ProducerConfig(m, k, "types-"+format)
			cfg.Kafka.Format = format
			cfg.Kafka.TopicPrefix = "k-" + format
			if format == schemas.FormatAvroConfluent {
				cfg.Kafka.SchemaRegistry = &kafkaconn.SchemaRegistryConfig{URL: reg.URL, User: reg.User, Password: reg.Password}
			}
			cfg.Tables.Include = []string{"ty.*"}
			r := cdctest.StartProducer(t, cfg)
			r.CaughtUp(t, m.DB())
			res, err := schemastore.NewResolver(cfg.Kafka.Config, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			recs := cdctest.ReadAllWith(t, k.Brokers, `^k-`+format+`\.ty\.all_types$`, time.Minute, res)
			checkEveryType(t, cols, recs)
			switch format {
			case schemas.FormatAvro:
				if n := len(cdctest.ReadAll(t, k.Brokers, `^k-avro\._schemas$`, time.Minute)); n == 0 {
					t.Error("no schema in k-avro._schemas")
				}
			case schemas.FormatAvroConfluent:
				if ids := reg.Subjects()["k-avro-confluent.ty.all_types-value"]; len(ids) != 1 {
					t.Errorf("registry subjects %v", reg.Subjects())
				}
			}
		})
	}
	// Independent decoder: Apache Avro's Python implementation reads the avro
	// records with the schemas from _schemas and gets the JSON envelope's values.
	t.Run("python3-avro", func(t *testing.T) {
		for _, format := range []string{schemas.FormatJSON, schemas.FormatAvro} {
			cfg := cdctest.ProducerConfig(m, k, "py-"+format)
			cfg.Kafka.Format = format
			cfg.Kafka.TopicPrefix = "py-" + format
			cfg.Tables.Include = []string{"ty.*"}
			cdctest.StartProducer(t, cfg).CaughtUp(t, m.DB())
		}
		checkPythonAvro(t, k, "py-avro", "py-json", "ty.all_types")
	})
	// json-compact read without kanal: Python's json module and the
	// descriptors rebuild the JSON envelope of every change.
	t.Run("python3-json-compact", func(t *testing.T) {
		for _, format := range []string{schemas.FormatJSON, schemas.FormatJSONCompact} {
			cfg := cdctest.ProducerConfig(m, k, "pyc-"+format)
			cfg.Kafka.Format = format
			cfg.Kafka.TopicPrefix = "pyc-" + format
			cfg.Tables.Include = []string{"ty.*"}
			cdctest.StartProducer(t, cfg).CaughtUp(t, m.DB())
		}
		checkPythonCompact(t, k, "pyc-json-compact", "pyc-json", "ty.all_types")
	})
}

func checkEveryType(t *testing.T, cols string, recs []cdctest.Record) {
	t.Helper()

	nulls := map[string]any{}
	for _, c := range strings.Split(cols, ",") {
		nulls[c] = nil
	}
	nulls["id"] = int64(3)
	zeroFractions := maps.Clone(nulls)
	for c, v := range map[string]any{"id": int64(4), "tm": "-00:00:01", "tm6": "-838:59:59.000000", "tm1": "838:59:59.0",
		"tm2": "-25:00:00.00", "tm3": "00:00:00.000", "tm4": "-00:00:01.0000", "tm5": "34:56:07.00000"} {
		zeroFractions[c] = v
	}
	want := map[string]map[string]any{
		"ty.all_types:1": {
			"id": int64(1), "ti": int64(127), "tiu": uint64(255), "si": int64(32767), "siu": uint64(65535),
			"mi": int64(8388607), "miu": uint64(16777215), "i": int64(2147483647), "iu": uint64(4294967295),
			"bi": int64(math.MaxInt64), "biu": uint64(math.MaxUint64),
			"d65": schemas.Decimal("12345678901234567890123456789012345.123456789012345678901234567890"),
			"d2":  schemas.Decimal("99999999.99"), "f": float32(1.5), "db": 2.718281828459045,
			"dt": "9999-12-31", "dtm": "9999-12-31 23:59:59", "dtm3": "2024-02-29 12:34:56.789",
			"dtm6": "2024-02-29 12:34:56.789012",
			"ts6":  "2024-02-29T09:34:56.789012Z", "ts": "2038-01-19T03:14:07Z",
			"tm": "838:59:59", "tm6": "-123:45:06.500000", "y": int64(2155),
			"tm1": "-838:59:59.0", "tm2": "-838:59:59.00", "tm3": "25:00:00.500", "tm4": "00:00:00.0000", "tm5": "-00:00:01.50000",
			"c": "abc", "vc": "héllo 🎉 世界 \"q\" \\ \n", "tx": strings.Repeat("x", 1000), "mtx": "mtx",
			"bn": []byte("ab\x00\x00"), "vb": []byte{0, 0xff, 0, 1}, "bl": []byte{0xde, 0xad, 0xbe, 0xef, 0}, "lbl": []byte{},
			"bt": uint64(0b1010101010), "b1": uint64(1), "e": "large", "st": "x,z",
			"j": `{"a": [1, 2.5, "s"], "b": null}`,
		},
		"ty.all_types:2": {
			"id": int64(2), "ti": int64(-128), "tiu": uint64(0), "si": int64(-32768), "siu": uint64(0),
			"mi": int64(-8388608), "miu": uint64(0), "i": int64(math.MinInt32), "iu": uint64(0),
			"bi": int64(math.MinInt64), "biu": uint64(0),
			"d65": schemas.Decimal("-0.000000000000000000000000000001"), "d2": schemas.Decimal("-0.01"),
			"f": float32(-3.4028234e38), "db": -1.7976931348623157e308,
			"dt": "1000-01-01", "dtm": "1000-01-01 00:00:00", "dtm3": "1000-01-01 00:00:00.001",
			"dtm6": "1000-01-01 00:00:00.000001",
			"ts6":  "1970-01-01T00:00:01.000001Z", "ts": "1970-01-01T00:00:01Z",
			"tm": "-838:59:59", "tm6": "00:00:00.000001", "y": int64(1901),
			"tm1": "00:00:00.0", "tm2": "00:00:00.01", "tm3": "-00:00:00.001", "tm4": "100:00:00.0001", "tm5": "-838:59:59.00000",
			"c": "", "vc": "", "tx": "", "mtx": "",
			"bn": []byte{0, 0, 0, 0}, "vb": []byte{}, "bl": []byte{}, "lbl": []byte{0},
			"bt": uint64(0), "b1": uint64(0), "e": "small", "st": "", "j": "[]",
		},
		"ty.all_types:3": nulls,
		"ty.all_types:4": zeroFractions,
	}
	got := map[string]map[string]any{}
	for _, rec := range recs {
		if rec.Change != nil {
			got[rec.Key] = rec.Change.After
		}
	}
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			t.Errorf("no change for %s", key)
			continue
		}
		var names []string
		for c := range w {
			names = append(names, c)
		}
		sort.Strings(names)
		for _, c := range names {
			if !reflect.DeepEqual(g[c], w[c]) {
				t.Errorf("%s column %s: got %#v (%T), want %#v (%T)", key, c, g[c], g[c], w[c], w[c])
			}
		}
		if len(g) != len(w) {
			t.Errorf("%s: %d columns, want %d", key, len(g), len(w))
		}
	}
	// Column types are part of the envelope.
	var types []string
	for _, c := range recs[0].Change.Columns {
		types = append(types, c.Name+" "+c.Type)
	}
	wantTypes := "id int,ti tinyint,tiu tinyint unsigned,si smallint,siu smallint unsigned,mi mediumint,miu mediumint unsigned," +
		"i int,iu int unsigned,bi bigint,biu bigint unsigned,d65 decimal(65,30),d2 decimal(10,2),f float,db double," +
		"dt date,dtm datetime,dtm3 datetime(3),dtm6 datetime(6),ts6 timestamp(6),ts timestamp,tm time,tm6 time(6)," +
		"tm1 time(1),tm2 time(2),tm3 time(3),tm4 time(4),tm5 time(5),y year," +
		"c char,vc varchar,tx text,mtx mediumtext,bn binary,vb varbinary,bl blob,lbl longblob," +
		"bt bit(10),b1 bit(1),e enum,st set,j longtext"
	if g := strings.Join(types, ","); g != wantTypes {
		t.Errorf("column types:\n got %s\nwant %s", g, wantTypes)
	}
}

// TestKcatPartition: Debian's kcat, an independent Kafka client, reads the topic
// (read_committed) and reports for every key the partition kanal chose, which is
// also the one schemas.Partition (Kafka's murmur2) computes.
func TestKcatPartition(t *testing.T) {
	kcat := testenv.RequireBinary(t, "kcat")
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE kc")
	m.Exec(t, "CREATE TABLE kc.t (id INT PRIMARY KEY, s VARCHAR(20))")
	for i := 0; i < 200; i++ {
		m.Exec(t, "INSERT INTO kc.t VALUES (?, ?)", i, fmt.Sprint("v", i))
	}
	cfg := cdctest.ProducerConfig(m, k, "kcat")
	cfg.Kafka.Partitions = 7
	cfg.Tables.Include = []string{"kc.*"}
	r := cdctest.StartProducer(t, cfg)
	r.CaughtUp(t, m.DB())

	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.kc\.t$`, time.Minute)
	ours := map[string]int32{}
	for _, rec := range recs {
		ours[rec.Key] = rec.Partition
	}
	out, err := osexec.Command(kcat, "-C", "-b", k.Brokers[0], "-t", "kanal.kc.t", "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%p %k\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 200 {
		t.Fatalf("kcat read %d records, want 200:\n%s", len(lines), out)
	}
	used := map[int32]bool{}
	for _, line := range lines {
		ps, key, _ := strings.Cut(line, " ")
		p, err := strconv.Atoi(ps)
		if err != nil {
			t.Fatalf("kcat line %q", line)
		}
		if ours[key] != int32(p) {
			t.Errorf("key %s: kcat sees partition %d, kanal consumer %d", key, p, ours[key])
		}
		if want := schemas.Partition([]byte(key), 7); want != int32(p) {
			t.Errorf("key %s: partition %d, murmur2 says %d", key, p, want)
		}
		used[int32(p)] = true
	}
	if len(used) < 5 {
		t.Errorf("200 keys used only %d of 7 partitions", len(used))
	}
}
