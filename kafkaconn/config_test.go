package kafkaconn

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateNamesField(t *testing.T) {
	cases := []struct {
		mod   func(*Config)
		field string
	}{
		{func(c *Config) { c.Brokers = nil }, "kafka.brokers"},
		{func(c *Config) { c.Brokers = []string{"a:1", ""} }, "kafka.brokers[1]"},
		{func(c *Config) { c.TopicPrefix = "bad prefix" }, "kafka.topic_prefix"},
		{func(c *Config) { c.SASL = &SASLConfig{Mechanism: "GSSAPI", User: "u"} }, "kafka.sasl.mechanism"},
		{func(c *Config) { c.SASL = &SASLConfig{Mechanism: "PLAIN"} }, "kafka.sasl.user"},
	}
	for _, tc := range cases {
		c := Default()
		c.Brokers = []string{"127.0.0.1:9092"}
		tc.mod(&c)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: got %v", tc.field, err)
		}
		if !strings.HasPrefix(err.Error(), tc.field+": ") {
			t.Errorf("%s: message %q does not start with the field", tc.field, err)
		}
	}
	c := Default()
	c.Brokers = []string{"127.0.0.1:9092"}
	c.SASL = &SASLConfig{Mechanism: "SCRAM-SHA-512", User: "u", Password: "s3cret"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := c.Redacted(); r.SASL.Password != "[redacted]" || c.SASL.Password != "s3cret" {
		t.Errorf("Redacted: %+v (original %+v)", r.SASL, c.SASL)
	}
}
