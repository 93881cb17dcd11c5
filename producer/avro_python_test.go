package producer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
)

// pythonAvroDecoder decodes kanal's Avro records with Apache Avro's own Python
// implementation (Debian's python3-avro), given only the schemas of the
// _schemas topic. It checks each record's fingerprint against the CRC-64-AVRO of
// the schema's Parsing Canonical Form (computed here, from the spec) and prints
// every change as JSON, with values rendered so that they compare with the JSON
// envelope's: decimals in fixed notation, timestamps as kanal writes them, bytes
// as hex, SET arrays joined with commas.
const pythonAvroDecoder = `
import base64, datetime, decimal, io, json, re, sys
import avro.io, avro.schema

EMPTY = 0xc15d213aa4d7a795
TABLE = []
for i in range(256):
    fp = i
    for _ in range(8):
        fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
    TABLE.append(fp)

def crc64(data):
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xff]
    return fp

def canonical(schema):
    # python3-avro 1.11 writes a primitive with a logical type as {"type":"bytes"};
    # the specification (and Java's SchemaNormalization) strips the logical type
    # and writes the primitive's simple form, "bytes".
    return re.sub(r'\{"type":"(null|boolean|int|long|float|double|bytes|string)"\}', r'"\1"', schema.canonical_form)

def row_fields(schema):
    for f in schema.fields:
        if f.name == "after":
            for branch in f.type.schemas:
                if branch.type == "record":
                    return branch.fields

def render(value, kanal_type):
    if value is None:
        return None
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, datetime.datetime):
        fsp = int(kanal_type[kanal_type.index("(") + 1:-1]) if "(" in kanal_type else 0
        if value == datetime.datetime(1970, 1, 1, tzinfo=value.tzinfo):
            text = "0000-00-00 00:00:00"
            return text + ("." + "0" * fsp if fsp else "")
        text = value.strftime("%Y-%m-%dT%H:%M:%S")
        if fsp:
            text += "." + ("%06d" % value.microsecond)[:fsp]
        return text + "Z"
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, list):
        return ",".join(value)
    return value

data = json.load(open(sys.argv[1]))
schemas = {k: avro.schema.parse(v) for k, v in data["schemas"].items()}
out = []
for rec in data["records"]:
    raw = base64.b64decode(rec["value"])
    if raw[:2] != b"\xc3\x01":
        sys.exit("record %s: no single-object marker" % rec["key"])
    key = raw[2:10].hex()
    schema = schemas[key]
    if crc64(canonical(schema).encode()).to_bytes(8, "little").hex() != key:
        sys.exit("record %s: fingerprint %s is not the schema's CRC-64-AVRO" % (rec["key"], key))
    datum = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(raw[10:])))
    fields = row_fields(schema)
    change = {"op": datum["op"], "seq": datum["seq"], "source": datum["source"]}
    for image in ("before", "after"):
        row = datum[image]
        if row is None:
            change[image] = None
            continue
        change[image] = {}
        for f in fields:
            name = f.get_prop("kanal.column") or f.name
            change[image][name] = render(row[f.name], f.get_prop("kanal.type"))
    out.append(change)
json.dump(out, sys.stdout)
`

// checkPythonAvro runs pythonAvroDecoder over the avro records of a table topic
// and compares each change with the JSON envelope the json format wrote for the
// same change (same seq).
func checkPythonAvro(t *testing.T, k *testenv.KafkaCluster, avroPrefix, jsonPrefix, table string) {
	t.Helper()
	python := "/usr/bin/python3" // Debian's: python3-avro is installed for it (deploy/local/install.sh)
	if err := osexec.Command(python, "-c", "import avro.io").Run(); err != nil {
		t.Fatalf("Debian's python3-avro is missing (run deploy/local/install.sh): %v", err)
	}
	raw := func(topic string) []*kgo.Record {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ends, err := kadm.NewClient(k.Client(t)).ListCommittedOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Offset > 0 {
				want[o.Partition] = o.Offset
			}
		})
		cl := k.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
		var out []*kgo.Record
		for len(want) > 0 && ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				if r.Offset+1 >= want[r.Partition] {
					delete(want, r.Partition) // every transaction below the end ends in a marker
				}
				if !r.Attrs.IsControl() {
					out = append(out, r)
				}
			})
		}
		return out
	}
	input := struct {
		Schemas map[string]string   `json:"schemas"`
		Records []map[string]string `json:"records"`
	}{Schemas: map[string]string{}}
	for _, r := range raw(schemas.SchemasTopic(avroPrefix)) {
		input.Schemas[string(r.Key)] = string(r.Value)
	}
	for _, r := range raw(avroPrefix + "." + table) {
		if r.Value != nil {
			input.Records = append(input.Records, map[string]string{"key": string(r.Key), "value": base64.StdEncoding.EncodeToString(r.Value)})
		}
	}
	if len(input.Records) == 0 || len(input.Schemas) == 0 {
		t.Fatalf("%d avro records, %d schemas", len(input.Records), len(input.Schemas))
	}
	dir := t.TempDir()
	in, script := filepath.Join(dir, "in.json"), filepath.Join(dir, "decode.py")
	b, _ := json.Marshal(input)
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(pythonAvroDecoder), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := osexec.Command(python, script, in)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3-avro: %v\n%s", err, stderr.String())
	}
	var decoded []map[string]any
	dec := json.NewDecoder(&stdout)
	dec.UseNumber()
	if err := dec.Decode(&decoded); err != nil {
		t.Fatal(err)
	}
	want := map[string]*schemas.Change{}
	for _, r := range cdctest.ReadAll(t, k.Brokers, "^"+strings.ReplaceAll(jsonPrefix+"."+table, ".", `\.`)+"$", time.Minute) {
		if r.Change != nil {
			want[strconv.FormatUint(r.Change.Seq, 10)] = r.Change
		}
	}
	if len(decoded) != len(want) {
		t.Errorf("python decoded %d changes, the json topic holds %d", len(decoded), len(want))
	}
	for _, got := range decoded {
		seq := fmt.Sprint(got["seq"])
		w := want[seq]
		if w == nil {
			t.Errorf("python decoded seq %s, which the json topic lacks", seq)
			continue
		}
		if got["op"] != string(w.Op) {
			t.Errorf("seq %s: op %v, json %s", seq, got["op"], w.Op)
		}
		src, _ := got["source"].(map[string]any)
		if fmt.Sprint(src["db"], ".", src["table"], ":", src["pos"], ":", src["row"]) != fmt.Sprint(w.Source.DB, ".", w.Source.Table, ":", w.Source.Pos, ":", w.Source.Row) {
			t.Errorf("seq %s: source %v, json %+v", seq, src, w.Source)
		}
		for _, image := range []string{"before", "after"} {
			gi, _ := got[image].(map[string]any)
			wi := w.Before
			if image == "after" {
				wi = w.After
			}
			if (gi == nil) != (wi == nil) {
				t.Errorf("seq %s %s: python %v, json %v", seq, image, gi, wi)
				continue
			}
			for _, c := range w.Columns {
				g, e := pyValue(gi[c.Name]), jsonValue(wi[c.Name])
				if c.Type == "bigint unsigned" {
					g = strings.Replace(g, "text ", "int ", 1) // decimal(20,0) in Avro
				}
				if g != e {
					t.Errorf("seq %s %s column %s (%s): python %s, json %s", seq, image, c.Name, c.Type, g, e)
				}
			}
			if len(gi) != len(wi) {
				t.Errorf("seq %s %s: python %d columns, json %d", seq, image, len(gi), len(wi))
			}
		}
	}
}

// pyValue and jsonValue render a value from each side as comparable text.
func pyValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case json.Number:
		if f, err := x.Float64(); err == nil && strings.ContainsAny(string(x), ".eE") {
			return "float " + strconv.FormatFloat(f, 'g', -1, 64)
		}
		return "int " + string(x)
	case map[string]any:
		return "hex " + fmt.Sprint(x["hex"])
	case string:
		return "text " + x
	}
	return fmt.Sprintf("%T %v", v, v)
}

func jsonValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case int64:
		return "int " + strconv.FormatInt(x, 10)
	case uint64:
		return "int " + strconv.FormatUint(x, 10)
	case float32:
		return "float " + strconv.FormatFloat(float64(x), 'g', -1, 64)
	case float64:
		return "float " + strconv.FormatFloat(x, 'g', -1, 64)
	case schemas.Decimal:
		return "text " + string(x)
	case string:
		return "text " + x
	case []byte:
		return "hex " + hex.EncodeToString(x)
	}
	return fmt.Sprintf("%T %v", v, v)
}
