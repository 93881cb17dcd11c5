package kafkaconn_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// TestTLSAndSASL runs clients built from a Config against a broker that
// requires TLS with a client certificate and SASL: each mechanism works
// (password given or read from a file), and each mistake fails with an error
// that names the broker and what to fix.
func TestTLSAndSASL(t *testing.T) {
	certs := testenv.NewTLSCerts(t)
	const pw256, pw512, pwPlain = "scram-256-secret", "scram-512-secret", "plain-secret"
	k := testenv.Kafka(t,
		kfake.TLS(certs.ServerConfig(true)),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "alice", pwPlain),
		kfake.Superuser("SCRAM-SHA-256", "bob", pw256),
		kfake.Superuser("SCRAM-SHA-512", "carol", pw512),
	)
	pwFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(pwFile, []byte(pw512+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	goodTLS := tlsconfig.Config{Enabled: true, CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey}
	config := func(tc tlsconfig.Config, sasl *kafkaconn.SASLConfig) kafkaconn.Config {
		c := kafkaconn.Default()
		c.Brokers = k.Brokers
		c.TLS = tc
		c.SASL = sasl
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate: %v", err)
		}
		return c
	}

	for _, sasl := range []*kafkaconn.SASLConfig{
		{Mechanism: "PLAIN", User: "alice", Password: pwPlain},
		{Mechanism: "SCRAM-SHA-256", User: "bob", Password: pw256},
		{Mechanism: "SCRAM-SHA-512", User: "carol", PasswordFile: pwFile},
	} {
		t.Run(sasl.Mechanism, func(t *testing.T) {
			c := config(goodTLS, sasl)
			roundTrip(t, c, "t-"+strings.ToLower(sasl.Mechanism))
		})
	}

	// The mistakes: each fails (bounded by a short timeout) with an error
	// naming the broker or the mechanism, and none holds a password.
	scram := &kafkaconn.SASLConfig{Mechanism: "SCRAM-SHA-256", User: "bob", Password: pw256}
	for _, tc := range []struct {
		name string
		c    kafkaconn.Config
		want []string
		is   error
	}{
		{"plaintext", config(tlsconfig.Config{}, scram), []string{"requires TLS"}, nil},
		{"wrong CA", config(tlsconfig.Config{Enabled: true, CA: certs.WrongCA, Cert: certs.ClientCert, Key: certs.ClientKey}, scram),
			[]string{"kafka broker " + k.Brokers[0], "not trusted", "kafka.tls.ca", "x509: certificate signed by unknown authority"}, nil},
		{"wrong server name", config(tlsconfig.Config{Enabled: true, CA: certs.CA, Cert: certs.ClientCert, Key: certs.ClientKey, ServerName: "kafka.example"}, scram),
			[]string{"kafka broker " + k.Brokers[0], "not trusted", "kafka.example"}, nil},
		{"no client certificate", config(tlsconfig.Config{Enabled: true, CA: certs.CA}, scram),
			[]string{"kafka broker " + k.Brokers[0], "refused", "kafka.tls.cert", "certificate required"}, nil},
		// kfake hangs up on a failed SASL login (Apache Kafka answers
		// SASL_AUTHENTICATION_FAILED first, which franz-go reports as such).
		{"wrong password", config(goodTLS, &kafkaconn.SASLConfig{Mechanism: "SCRAM-SHA-256", User: "bob", Password: "not-" + pw256}),
			nil, nil},
		{"no SASL", config(goodTLS, nil), []string{"SASL is required"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ping(t, tc.c)
			if err == nil {
				t.Fatal("connected")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q", w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error is not %v", tc.is)
			}
			for _, pw := range []string{pw256, pw512, pwPlain} {
				if strings.Contains(err.Error(), pw) {
					t.Errorf("error shows a password")
				}
			}
		})
	}
}

// ping asks the broker for its metadata once.
func ping(t *testing.T, c kafkaconn.Config) error {
	cl, err := kgo.NewClient(append(c.ClientOptions(), kgo.RequestRetries(0), kgo.RetryTimeout(time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}

// roundTrip creates topic, produces a record and reads it back.
func roundTrip(t *testing.T, c kafkaconn.Config, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append(c.ClientOptions(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("hello")}).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err0(); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "hello" {
		t.Fatalf("read back %d records", len(recs))
	}
}
