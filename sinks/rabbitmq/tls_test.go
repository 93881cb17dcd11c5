package rabbitmqsink_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/amqptest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// TestTLSAndPasswordFile: a broker that speaks AMQP over TLS only. With the CA
// in tls and the password in a file, a change is published; plaintext and a
// wrong CA fail naming the broker and what to set, and publish nothing.
func TestTLSAndPasswordFile(t *testing.T) {
	certs := testenv.NewTLSCerts(t)
	mq := testenv.RabbitMQ(t, testenv.WithRabbitMQTLS(certs))
	pwFile := filepath.Join(t.TempDir(), "mq-password")
	if err := os.WriteFile(pwFile, []byte("guest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := config("amqps://guest@"+mq.Addr+"/", "t.*")
	good.PasswordFile = pwFile
	good.TLS = tlsconfig.Config{Enabled: true, CA: certs.CA}
	queue := bindQueue(t, mq.URL, good.Exchange, "#")
	publish := func(cfg rabbitmqsink.Config) error {
		cfg.Retry.MaxAttempts = 1
		h := newHandler(t, cfg)
		return h.Handle(context.Background(), consumer.Batch{Topic: "kanal.t.orders",
			Records: []consumer.Record{rec("orders", schemas.OpCreate, 1, 1, 0)}})
	}

	wrongCA := good
	wrongCA.TLS.CA = certs.WrongCA
	plain := config("amqp://guest@"+mq.Addr+"/", "t.*")
	plain.Exchange, plain.PasswordFile = good.Exchange, pwFile
	for name, c := range map[string]struct {
		cfg  rabbitmqsink.Config
		says []string
	}{
		"wrong CA":  {wrongCA, []string{"rabbitmq amqps://guest@" + mq.Addr, "not trusted", "x509: certificate signed by unknown authority"}},
		"plaintext": {plain, []string{"rabbitmq amqp://guest@" + mq.Addr, "TLS", "amqps://"}},
	} {
		err := publish(c.cfg)
		if err == nil {
			t.Fatalf("%s: published", name)
		}
		for _, s := range c.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %q does not say %q", name, err, s)
			}
		}
	}
	ch := amqptest.Channel(t, mq.URL)
	if got := amqptest.Drain(t, ch, queue); len(got) != 0 {
		t.Fatalf("%d messages published through failed connections", len(got))
	}

	if err := publish(good); err != nil {
		t.Fatal(err)
	}
	if got := amqptest.Drain(t, ch, queue); len(got) != 1 || got[0].Key != "t.orders:1" {
		t.Fatalf("got %d messages, want the change of t.orders:1", len(got))
	}
}
