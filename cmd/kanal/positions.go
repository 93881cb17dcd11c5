package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/producer"
	"github.com/kanal-cdc/kanal/schemas"
)

func positionsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "positions", Short: "Show or reset a source's committed binlog position"}
	var conn connFlags
	var source string
	resolve := func(cmd *cobra.Command) (*kafkaconn.Config, string, error) {
		if conn.cfgPath == "" && source == "" {
			return nil, "", usageError{errors.New("give --config, or --brokers and --source")}
		}
		k, f, err := conn.resolve(cmd)
		if err != nil {
			return nil, "", err
		}
		src := source
		if f != nil && !cmd.Flags().Changed("source") {
			src = f.Source.Name
		}
		if src == "" {
			return nil, "", usageError{errors.New("--source is required: the configuration names no source")}
		}
		return k, src, nil
	}
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the last committed position of a source",
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, src, err := resolve(cmd)
			if err != nil {
				return err
			}
			pos, err := producer.ReadPosition(cmd.Context(), k, src)
			if err != nil {
				return err
			}
			if pos == nil {
				fmt.Printf("source %s: no committed position\n", src)
				return nil
			}
			fmt.Printf("%s\n", pos.Marshal())
			return nil
		},
	}
	reset := &cobra.Command{
		Use:   "reset",
		Short: "Delete a source's position so the next start uses source.start (stop the producer first)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, src, err := resolve(cmd)
			if err != nil {
				return err
			}
			cl, err := kgo.NewClient(k.ClientOptions()...)
			if err != nil {
				return err
			}
			defer cl.Close()
			// A tombstone: read_committed readers see it (it is not transactional) and
			// compaction eventually removes the source's key entirely.
			r := &kgo.Record{Topic: schemas.PositionsTopic(k.TopicPrefix), Key: []byte(src)}
			if err := cl.ProduceSync(cmd.Context(), r).FirstErr(); err != nil {
				return fmt.Errorf("reset position of %s: %w", src, err)
			}
			fmt.Fprintf(os.Stderr, "source %s: position deleted; the next start begins at source.start\n", src)
			return nil
		},
	}
	for _, c := range []*cobra.Command{show, reset} {
		conn.add(c, "its source name")
		c.Flags().StringVar(&source, "source", "", "source name (default with --config: the file's)")
	}
	cmd.AddCommand(show, reset)
	return cmd
}
