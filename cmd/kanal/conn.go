package main

import (
	"errors"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/kafkaconn"
)

// connFlags are the flags of the commands that need only the Kafka connection
// (tail, status, dlq, offsets, positions): --config, whose kafka section gives
// the brokers, the topic prefix, TLS, SASL and the schema registry, and
// --brokers and --prefix, which stand alone or override the file's values.
// Secrets only ever come from the file (or the files and variables it names),
// never from a flag, so that none shows in a process list or shell history.
type connFlags struct {
	cfgPath, brokers, prefix string
}

// add registers the flags on cmd; what says what else the file is read for.
func (c *connFlags) add(cmd *cobra.Command, what string) {
	if what != "" {
		what = ", " + what
	}
	cmd.Flags().StringVar(&c.cfgPath, "config", "", "configuration file: its kafka section (brokers, prefix, TLS, SASL, schema registry)"+what)
	cmd.Flags().StringVar(&c.brokers, "brokers", "", "comma-separated Kafka brokers (with --config: instead of the file's)")
	cmd.Flags().StringVar(&c.prefix, "prefix", kafkaconn.DefaultTopicPrefix, "topic prefix (with --config: the file's unless given)")
}

// resolve returns the connection of cmd's run: the file's kafka section with
// the flags given explicitly on top, or the flags alone. The file is returned
// too (nil without --config).
func (c *connFlags) resolve(cmd *cobra.Command) (*kafkaconn.Config, *config.File, error) {
	var k kafkaconn.Config
	var f *config.File
	set := cmd.Flags().Changed
	switch {
	case c.cfgPath != "":
		var err error
		if f, err = loadConfig(c.cfgPath); err != nil {
			return nil, nil, err
		}
		k = f.Kafka.Config
	case c.brokers == "":
		return nil, nil, usageError{errors.New("give --config, or --brokers")}
	default:
		k = kafkaconn.Default()
	}
	if set("brokers") {
		k.Brokers = strings.Split(c.brokers, ",")
	}
	if set("prefix") || f == nil {
		k.TopicPrefix = c.prefix
	}
	if err := k.Validate(); err != nil {
		return nil, nil, usageError{err}
	}
	return &k, f, nil
}
