package schemastore_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

func schemaOf(t *testing.T, cols ...schemas.Column) string {
	t.Helper()
	js, err := schemas.SchemaJSON(&schemas.TableVersion{DB: "d", Table: "t", Columns: cols})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// registryUnderTest is the in-test registry, or a real one when
// KANAL_SCHEMA_REGISTRY_URL is set (docs/formats.md).
func registryUnderTest(t *testing.T) (*kafkaconn.SchemaRegistryConfig, *testenv.RegistryServer) {
	if u := os.Getenv("KANAL_SCHEMA_REGISTRY_URL"); u != "" {
		return &kafkaconn.SchemaRegistryConfig{URL: u, User: os.Getenv("KANAL_SCHEMA_REGISTRY_USER"),
			Password: os.Getenv("KANAL_SCHEMA_REGISTRY_PASSWORD")}, nil
	}
	reg := testenv.SchemaRegistry(t)
	return &kafkaconn.SchemaRegistryConfig{URL: reg.URL, User: reg.User, Password: reg.Password}, reg
}

// TestRegistryClient: registration is idempotent and cached, ids resolve to the
// schema, a BACKWARD-incompatible version is refused with the subject named,
// an unknown id is not found, and a compatibility level is set when configured.
// With KANAL_SCHEMA_REGISTRY_URL it runs against that registry.
func TestRegistryClient(t *testing.T) {
	cfg, fake := registryUnderTest(t)
	ctx := context.Background()
	r, err := schemastore.NewRegistry(cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	subject := fmt.Sprintf("kanal-test-%d.d.t-value", time.Now().UnixNano())
	id := schemas.Column{Name: "id", Type: "int", PK: true}
	v1 := schemaOf(t, id, schemas.Column{Name: "a", Type: "varchar"})
	id1, err := r.Register(ctx, subject, v1)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := r.Register(ctx, subject, v1); err != nil || again != id1 {
		t.Errorf("second registration: %d, %v; want %d", again, err, id1)
	}
	// ADD COLUMN (nullable, default null) is BACKWARD compatible.
	v2 := schemaOf(t, id, schemas.Column{Name: "a", Type: "varchar"}, schemas.Column{Name: "b", Type: "bigint"})
	id2, err := r.Register(ctx, subject, v2)
	if err != nil || id2 == id1 {
		t.Fatalf("v2: id %d, %v", id2, err)
	}
	// A fresh client (a consumer) resolves the ids.
	r2, _ := schemastore.NewRegistry(cfg, logger(t))
	if s, err := r2.SchemaByID(ctx, id2); err != nil || !strings.Contains(s, `"b"`) {
		t.Errorf("schema %d: %.80s, %v", id2, s, err)
	}
	if _, err := r2.SchemaByID(ctx, 1<<30); !errors.Is(err, schemas.ErrSchemaNotFound) {
		t.Errorf("unknown id: %v, want ErrSchemaNotFound", err)
	}
	// varchar → int: a string cannot be read as an int (MODIFY to an unrelated type).
	v3 := schemaOf(t, id, schemas.Column{Name: "a", Type: "int"})
	_, err = r.Register(ctx, subject, v3)
	if !errors.Is(err, schemas.ErrSchemaRejected) || !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), "compatib") {
		t.Errorf("incompatible version: %v", err)
	}
	// With compatibility NONE configured kanal sets it on the subject, and the
	// same change goes through.
	none := *cfg
	none.Compatibility = "NONE"
	r3, _ := schemastore.NewRegistry(&none, logger(t))
	if _, err := r3.Register(ctx, subject, v3); err != nil {
		t.Errorf("with compatibility NONE: %v", err)
	}
	if fake == nil {
		return
	}
	// Wrong credentials are refused at once, without the password in the error.
	bad := *cfg
	bad.Password = "wrong-password-123"
	r4, _ := schemastore.NewRegistry(&bad, logger(t))
	_, err = r4.Register(ctx, subject+"x", v1)
	if !errors.Is(err, schemas.ErrSchemaRejected) || strings.Contains(err.Error(), bad.Password) {
		t.Errorf("bad credentials: %v", err)
	}
	// A registry that is down is retried with backoff until it answers.
	fake.Down.Store(true)
	before := fake.Requests.Load()
	done := make(chan error, 1)
	go func() { _, err := r.Register(ctx, subject+"-down", v1); done <- err }()
	for fake.Requests.Load() < before+3 {
		time.Sleep(20 * time.Millisecond)
	}
	fake.Down.Store(false)
	if err := <-done; err != nil {
		t.Errorf("register after the registry came back: %v", err)
	}
	// Down for longer than RetryFor: a transient error, not a rejection.
	fake.Down.Store(true)
	r.RetryFor = 300 * time.Millisecond
	_, err = r.Register(ctx, subject+"-down2", v1)
	fake.Down.Store(false)
	if err == nil || errors.Is(err, schemas.ErrSchemaRejected) {
		t.Errorf("registry down: %v, want a transient error", err)
	}
}

// TestRegistryCheck: Check (kanal config check --connect) answers with one
// request: nil for a registry that takes the credentials; for wrong ones an
// error with the status that names the settings to fix and not the password;
// for one that is down, an error at once (no retrying). With
// KANAL_SCHEMA_REGISTRY_URL it runs against that registry.
func TestRegistryCheck(t *testing.T) {
	cfg, fake := registryUnderTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := schemastore.NewRegistry(cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	bad := *cfg
	bad.User, bad.Password = "kanal", "not-the-password-831"
	rb, err := schemastore.NewRegistry(&bad, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = rb.Check(ctx)
	if cfg.User == "" {
		return // a real registry without authentication
	}
	if err == nil || !strings.Contains(err.Error(), "answered 401") || !strings.Contains(err.Error(), "kafka.schema_registry.user and password") ||
		strings.Contains(err.Error(), bad.Password) {
		t.Errorf("wrong password: %v", err)
	}
	if fake == nil {
		return // a real registry cannot be taken down from here
	}
	fake.Down.Store(true)
	defer fake.Down.Store(false)
	before := fake.Requests.Load()
	if err := r.Check(ctx); err == nil || !strings.Contains(err.Error(), "answered 503") {
		t.Errorf("registry down: %v", err)
	}
	if n := fake.Requests.Load() - before; n != 1 {
		t.Errorf("Check sent %d requests to a registry that is down, want 1", n)
	}
}

// TestProducerWaitsForRegistry: while the registry is down the producer writes
// nothing (no record without a resolvable schema); once it is back every
// change arrives and decodes.
func TestProducerWaitsForRegistry(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	reg := testenv.SchemaRegistry(t)
	m.Exec(t, "CREATE DATABASE rd")
	m.Exec(t, "CREATE TABLE rd.t (id INT PRIMARY KEY, v VARCHAR(10))")
	for i := 0; i < 10; i++ {
		m.Exec(t, "INSERT INTO rd.t VALUES (?, 'x')", i)
	}
	reg.Down.Store(true)
	cfg := cdctest.ProducerConfig(m, k, "rd")
	cfg.Kafka.Format = schemas.FormatAvroConfluent
	cfg.Kafka.SchemaRegistry = &kafkaconn.SchemaRegistryConfig{URL: reg.URL, User: reg.User, Password: reg.Password}
	cfg.Tables.Include = []string{"rd.*"}
	p := cdctest.StartProducer(t, cfg)
	for reg.Requests.Load() < 4 {
		if exited, err := p.Exited(); exited {
			t.Fatalf("producer exited while the registry was down: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.rd\.t$`, time.Minute); len(recs) != 0 {
		t.Fatalf("%d records committed while the registry was down", len(recs))
	}
	reg.Down.Store(false)
	p.CaughtUp(t, m.DB())
	res, err := schemastore.NewResolver(cfg.Kafka.Config, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if recs := cdctest.ReadAllWith(t, k.Brokers, `^kanal\.rd\.t$`, time.Minute, res); len(recs) != 10 {
		t.Errorf("%d records after the registry came back, want 10", len(recs))
	}
}

// TestUnknownSchemaDeadLettered: a record whose fingerprint is in no schema
// topic, or whose id the registry does not know, is dead-lettered with the
// reason; the records around it are applied.
func TestUnknownSchemaDeadLettered(t *testing.T) {
	k := testenv.Kafka(t, kfake.GroupMinSessionTimeout(time.Second))
	reg := testenv.SchemaRegistry(t)
	kc := kafkaconn.Config{Brokers: k.Brokers, TopicPrefix: "kanal",
		SchemaRegistry: &kafkaconn.SchemaRegistryConfig{URL: reg.URL, User: reg.User, Password: reg.Password}}
	cl := k.Client(t)
	enc, err := schemas.NewEncoder(schemas.FormatJSON, schemas.EncoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	te, _ := enc.Table(&schemas.TableVersion{DB: "u", Table: "t", Columns: []schemas.Column{{Name: "id", Type: "int", PK: true}}})
	good := func(id int64) *kgo.Record {
		v, err := te.AppendValue(nil, &schemas.RowChange{Op: schemas.OpCreate, Seq: uint64(id), Event: uint64(id),
			Source: &schemas.Source{DB: "u", Table: "t"}, After: []schemas.Value{schemas.IntValue(id)}})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: "kanal.u.t", Key: fmt.Appendf(nil, "u.t:%d", id), Value: v,
			Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte(schemas.FormatJSON)}}}
	}
	avroRec := binary.LittleEndian.AppendUint64([]byte{0xc3, 0x01}, 0x1234567890abcdef)
	confRec := []byte{0, 0, 0, 0x30, 0x39, 2} // id 12345
	recs := []*kgo.Record{good(1),
		{Topic: "kanal.u.t", Key: []byte("u.t:2"), Value: avroRec, Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte(schemas.FormatAvro)}}},
		good(3),
		{Topic: "kanal.u.t", Key: []byte("u.t:4"), Value: confRec, Headers: []kgo.RecordHeader{{Key: schemas.HeaderFormat, Value: []byte(schemas.FormatAvroConfluent)}}},
		good(5)}
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 1, 1, nil, "kanal.u.t"); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	coll := &collector{seqs: map[uint64]schemas.Op{}}
	creg := consumer.NewRegistry()
	if err := creg.Register(coll, consumer.Tables("u.t"), consumer.OnFailure(consumer.DeadLetter)); err != nil {
		t.Fatal(err)
	}
	runConsumers(t, k, "kanal", kc, creg)
	eventually(t, "good records applied", func() string {
		if n := coll.count(); n != 3 {
			return fmt.Sprintf("%d applied", n)
		}
		return ""
	})
	var dlq []*kgo.Record
	eventually(t, "unknown schemas dead-lettered", func() string {
		dlq = readRecords(t, k, "kanal._dlq.kanal-collector")
		if len(dlq) != 2 {
			return fmt.Sprintf("%d dead letters", len(dlq))
		}
		return ""
	})
	for i, want := range []string{"fingerprint " + schemas.FingerprintKey(0x1234567890abcdef), "schema id 12345"} {
		if r := header(dlq[i], schemas.HeaderDLQReason); r != "decode" {
			t.Errorf("dead letter %d: reason %q", i, r)
		}
		if e := header(dlq[i], schemas.HeaderDLQError); !strings.Contains(e, want) || !strings.Contains(e, "not found") {
			t.Errorf("dead letter %d: error %q does not name %s", i, e, want)
		}
	}
}
