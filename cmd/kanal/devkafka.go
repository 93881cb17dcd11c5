package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kanal-cdc/kanal/tlsconfig"
)

// devKafkaPasswordEnv holds the password of dev-kafka's SASL user: a flag
// would show it in the process list.
const devKafkaPasswordEnv = "KANAL_DEV_KAFKA_PASSWORD"

func devKafkaCmd() *cobra.Command {
	var listen, dataDir, tlsCert, tlsKey, tlsClientCA, saslMech, saslUser string
	var partitions int
	cmd := &cobra.Command{
		Use:   "dev-kafka [--listen 127.0.0.1:9092] [--data-dir DIR] [--tls-cert F --tls-key F [--tls-client-ca F]] [--sasl-user U]",
		Short: "Run a single-broker Kafka-protocol server for development (kfake; no replication)",
		Long: `dev-kafka runs an in-process Kafka-compatible broker (franz-go's kfake) with
transactions, consumer groups and compaction. Topics a client produces to or asks
for that do not exist yet are created with --default-partitions partitions. With
--data-dir it persists to disk and survives restarts; without it everything is in
memory. For development and tests only: it has no replication.

To try kanal's kafka.tls and kafka.sasl settings locally: --tls-cert and --tls-key
make the listener TLS only, --tls-client-ca also requires client certificates signed
by that CA; --sasl-user requires SASL logins as that user (--sasl-mechanism PLAIN,
SCRAM-SHA-256 or SCRAM-SHA-512) with the password in $` + devKafkaPasswordEnv + `.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, portStr, err := net.SplitHostPort(listen)
			if err != nil {
				return usageError{fmt.Errorf("--listen: %w", err)}
			}
			if host != "127.0.0.1" && host != "localhost" {
				return usageError{errors.New("--listen: dev-kafka binds 127.0.0.1 only")}
			}
			port, err := strconv.Atoi(portStr)
			if err != nil {
				return usageError{fmt.Errorf("--listen: bad port %q", portStr)}
			}
			opts := []kfake.Opt{
				kfake.NumBrokers(1),
				kfake.Ports(port),
				kfake.DefaultNumPartitions(partitions),
				// Clients that ask (the Java producer and librdkafka by default,
				// franz-go with AllowAutoTopicCreation) create topics on first use.
				kfake.AllowAutoTopicCreation(),
				kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": "1000"}),
			}
			if dataDir != "" {
				opts = append(opts, kfake.DataDir(dataDir))
			}
			sec, err := devKafkaSecurity(tlsCert, tlsKey, tlsClientCA, saslMech, saslUser)
			if err != nil {
				return usageError{err}
			}
			opts = append(opts, sec...)
			c, err := kfake.NewCluster(opts...)
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(os.Stdout, "dev-kafka listening on %s\n", c.ListenAddrs()[0])
			<-cmd.Context().Done()
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9092", "address to listen on (127.0.0.1 only)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "persist the broker's data in this directory")
	cmd.Flags().IntVar(&partitions, "default-partitions", 6, "partitions of auto-created topics")
	cmd.Flags().StringVar(&tlsCert, "tls-cert", "", "PEM server certificate: the listener speaks TLS only")
	cmd.Flags().StringVar(&tlsKey, "tls-key", "", "PEM key of --tls-cert")
	cmd.Flags().StringVar(&tlsClientCA, "tls-client-ca", "", "with --tls-cert: require client certificates signed by this PEM CA")
	cmd.Flags().StringVar(&saslUser, "sasl-user", "", "require SASL logins as this user (password in $"+devKafkaPasswordEnv+")")
	cmd.Flags().StringVar(&saslMech, "sasl-mechanism", "SCRAM-SHA-512", "with --sasl-user: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	return cmd
}

// devKafkaSecurity returns the kfake options of dev-kafka's TLS and SASL flags.
func devKafkaSecurity(cert, key, clientCA, mech, user string) ([]kfake.Opt, error) {
	var opts []kfake.Opt
	if cert != "" || key != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
		if clientCA != "" {
			pool, err := tlsconfig.LoadCA(clientCA)
			if err != nil {
				return nil, fmt.Errorf("--tls-client-ca: %w", err)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, kfake.TLS(tc))
	} else if clientCA != "" {
		return nil, errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	}
	if user != "" {
		switch mech {
		case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		default:
			return nil, fmt.Errorf("--sasl-mechanism: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", mech)
		}
		pw := os.Getenv(devKafkaPasswordEnv)
		if pw == "" {
			return nil, fmt.Errorf("--sasl-user needs the password in $%s", devKafkaPasswordEnv)
		}
		opts = append(opts, kfake.EnableSASL(), kfake.Superuser(mech, user, pw))
	}
	return opts, nil
}
