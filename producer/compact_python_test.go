package producer_test

import (
	"bytes"
	"encoding/json"
	"os"
	osexec "os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

// pythonCompactReader rebuilds the kanal JSON envelope of every json-compact
// record with nothing but Python's json module and the descriptors of the
// _schemas topic, as docs/formats.md tells readers without kanal to.
const pythonCompactReader = `
import json, sys
data = json.load(open(sys.argv[1]))
descs = {k: json.loads(v) for k, v in data["descriptors"].items()}
out = []
for value in data["records"]:
    v = json.loads(value)
    d = descs[v[0]]
    names = [c["name"] for c in d["columns"]]
    src = {"name": v[11] if len(v) > 11 else d["name"], "server_id": v[3], "file": v[4], "pos": v[5]}
    if v[6]:
        src["gtid"] = v[6]
    src.update({"ts_ms": v[7], "db": d["db"], "table": d["table"], "row": v[8]})
    env = {"op": v[1], "seq": v[2], "source": src, "columns": d["columns"],
           "before": None if v[9] is None else dict(zip(names, v[9])),
           "after": None if v[10] is None else dict(zip(names, v[10]))}
    if d["key_fallback"]:
        env["key_fallback"] = True
    out.append(env)
json.dump(out, sys.stdout)
`

// checkPythonCompact runs pythonCompactReader over the json-compact records of
// the topics matching re (prefix compactPrefix) and checks that each envelope it
// rebuilds decodes to the Change the json format wrote for the same change
// (same seq; the source names of the two producers differ).
func checkPythonCompact(t *testing.T, k *testenv.KafkaCluster, compactPrefix, jsonPrefix, table string) {
	t.Helper()
	input := struct {
		Descriptors map[string]string `json:"descriptors"`
		Records     []string          `json:"records"`
	}{Descriptors: map[string]string{}}
	for _, r := range cdctest.ReadAll(t, k.Brokers, "^"+regexp.QuoteMeta(schemas.SchemasTopic(compactPrefix))+"$", time.Minute) {
		input.Descriptors[r.Key] = string(r.Value)
	}
	res, err := schemastore.NewResolver(kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: compactPrefix}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	for _, r := range cdctest.ReadAllWith(t, k.Brokers, "^"+regexp.QuoteMeta(compactPrefix+"."+table)+"$", time.Minute, res) {
		if !r.Tombstone {
			input.Records = append(input.Records, string(r.Value))
		}
	}
	if len(input.Records) == 0 || len(input.Descriptors) == 0 {
		t.Fatalf("%d json-compact records, %d descriptors", len(input.Records), len(input.Descriptors))
	}
	dir := t.TempDir()
	in, script := filepath.Join(dir, "in.json"), filepath.Join(dir, "read.py")
	b, _ := json.Marshal(input)
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(pythonCompactReader), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := osexec.Command("/usr/bin/python3", script, in)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	var rebuilt []json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &rebuilt); err != nil {
		t.Fatal(err)
	}
	want := map[uint64]*schemas.Change{}
	for _, r := range cdctest.ReadAll(t, k.Brokers, "^"+regexp.QuoteMeta(jsonPrefix+"."+table)+"$", time.Minute) {
		if r.Change != nil {
			want[r.Change.Seq] = r.Change
		}
	}
	if len(rebuilt) != len(want) {
		t.Errorf("python rebuilt %d changes, the json topic holds %d", len(rebuilt), len(want))
	}
	for _, env := range rebuilt {
		got, err := schemas.DecodeJSON(env)
		if err != nil {
			t.Fatalf("python's envelope: %v\n%s", err, env)
		}
		w := want[got.Seq]
		if w == nil {
			t.Fatalf("python rebuilt seq %d, which the json topic lacks", got.Seq)
		}
		wc := *w
		wc.Source.Name = got.Source.Name
		if !reflect.DeepEqual(got, &wc) {
			t.Errorf("seq %d:\npython %+v\njson   %+v", got.Seq, got, &wc)
		}
	}
}
