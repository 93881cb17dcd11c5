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
