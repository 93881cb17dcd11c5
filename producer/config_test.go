package producer

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
)

func TestFilter(t *testing.T) {
	f := filter{include: []string{"shop.*", "crm.customers"}, exclude: []string{"shop.tmp_*"}}
	for name, want := range map[string]bool{
		"shop.orders": true, "shop.tmp_x": false, "crm.customers": true, "crm.leads": false, "other.t": false,
	} {
		db, table, _ := strings.Cut(name, ".")
		if got := f.match(db, table); got != want {
			t.Errorf("%s: match %v, want %v", name, got, want)
		}
	}
	if !(filter{}).match("any", "table") {
		t.Error("no include patterns must capture every table")
	}
}

func TestTopicName(t *testing.T) {
	if got := schemas.TopicName("kanal", "shop", "order items$"); got != "kanal.shop.order_items_" {
		t.Errorf("schemas.TopicName = %q", got)
	}
}

func TestConfigLogValueRedactsSecrets(t *testing.T) {
	c := DefaultConfig()
	c.Source.Password = "db-secret"
	c.Kafka.SASL = &kafkaconn.SASLConfig{Mechanism: "PLAIN", User: "u", Password: "kafka-secret"}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("cfg", "config", c)
	if s := b.String(); strings.Contains(s, "db-secret") || strings.Contains(s, "kafka-secret") {
		t.Errorf("secrets in log line: %s", s)
	}
	if s := fmt.Sprint(*c.Kafka.SASL); strings.Contains(s, "kafka-secret") {
		t.Errorf("secret in SASL String: %s", s)
	}
	if c.Source.Password != "db-secret" {
		t.Error("LogValue changed the config")
	}
}

// TestNewWarnsPlaintextOnce: a producer set up to read a source and write to
// brokers on other machines without TLS says so, once per server, however
// many producers the process makes.
func TestNewWarnsPlaintextOnce(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg := DefaultConfig()
	cfg.Source.Name, cfg.Source.Addr, cfg.Source.User = "warn", "10.99.0.1:3306", "kanal"
	cfg.Kafka.Brokers = []string{"10.99.0.2:9092", "10.99.0.3:9092"}
	for range 2 {
		if _, err := New(cfg, log); err != nil {
			t.Fatal(err)
		}
	}
	for _, addr := range []string{"10.99.0.1:3306", "10.99.0.2:9092", "10.99.0.3:9092"} {
		if n := strings.Count(buf.String(), "addr="+addr); n != 1 {
			t.Errorf("%s: %d warnings, want 1:\n%s", addr, n, buf.String())
		}
	}
	if !strings.Contains(buf.String(), "set source.tls") || !strings.Contains(buf.String(), "set kafka.tls") {
		t.Errorf("the warnings do not name the settings:\n%s", buf.String())
	}
}
