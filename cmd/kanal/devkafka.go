package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
)

func devKafkaCmd() *cobra.Command {
	var listen, dataDir string
	var partitions int
	cmd := &cobra.Command{
		Use:   "dev-kafka [--listen 127.0.0.1:9092] [--data-dir DIR]",
		Short: "Run a single-broker Kafka-protocol server for development (kfake; no replication)",
		Long: `dev-kafka runs an in-process Kafka-compatible broker (franz-go's kfake) with
transactions, consumer groups and compaction. Topics a client produces to or asks
for that do not exist yet are created with --default-partitions partitions. With
--data-dir it persists to disk and survives restarts; without it everything is in
memory. For development and tests only: it has no replication.`,
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
	return cmd
}
