package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/schemastore"
)

func tailCmd() *cobra.Command {
	var (
		conn                       connFlags
		tables, registry, dlqGroup string
		fromBeginning              bool
		max                        int
		timeout                    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "tail (--config kanal.yaml | --brokers B) (--tables db.table[,..] | --dlq GROUP)",
		Short: "Print committed changes (or a group's dead letters) as JSON, one per line",
		Long: `tail reads the table topics with read_committed (only changes of committed
Kafka transactions) and prints each change as a kanal JSON envelope on one line.
Table patterns use glob syntax: shop.*, shop.order_*. Tombstones are not printed;
Canal DDL messages are skipped with a note on stderr. An unreachable broker ends
tail within seconds with exit code 1.

With --config it connects as the file's kafka section says (brokers, topic prefix,
TLS, SASL, and kafka.schema_registry for avro-confluent records); --brokers,
--prefix and --schema-registry given as well replace the file's values.

With --dlq G it reads the dead-letter topic of group G instead and prints each dead
letter as {"dlq":{handler, reason, error, topic, partition, offset, attempts, time,
truncated, value_sha256}, "key", "change"} — "change" is null and "value_error" says
why when the value cannot be decoded (a truncated or malformed record).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (tables == "") == (dlqGroup == "") {
				return usageError{errors.New("one of --tables or --dlq is required")}
			}
			k, _, err := conn.resolve(cmd)
			if err != nil {
				return err
			}
			if registry != "" {
				// The whole registry setting, not only its URL: the file's
				// credentials are not sent to a registry the file does not name.
				k.SchemaRegistry = &kafkaconn.SchemaRegistryConfig{URL: registry}
				if err := k.SchemaRegistry.Validate(); err != nil {
					return usageError{fmt.Errorf("--schema-registry: %w", err)}
				}
			}
			var re string
			if dlqGroup != "" {
				re = "^" + regexp.QuoteMeta(schemas.DLQTopic(k.TopicPrefix, dlqGroup)) + "$"
			} else {
				if re, err = topicRegex(k.TopicPrefix, strings.Split(tables, ",")); err != nil {
					return usageError{err}
				}
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			start := kgo.NewOffset().AtEnd()
			if fromBeginning {
				start = kgo.NewOffset().AtStart()
			}
			// Avro and json-compact records (and dead letters of them) are
			// decoded with the schemas and descriptors of "<prefix>._schemas"
			// or the schemas of the registry.
			res, err := schemastore.NewResolver(*k, nil)
			if err != nil {
				return usageError{err}
			}
			defer res.Close()
			dec := schemas.NewDecoder()
			dec.Schemas = res
			cl, err := kgo.NewClient(append(k.ClientOptions(),
				kgo.ConsumeRegex(), kgo.ConsumeTopics(re),
				kgo.ConsumeResetOffset(start),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.MetadataMinAge(time.Second), kgo.MetadataMaxAge(5*time.Second),
			)...)
			if err != nil {
				return err
			}
			defer cl.Close()
			// The client would retry an unreachable broker silently until the
			// timeout; one bounded request first says which broker fails.
			pingCtx, cancel := context.WithTimeout(ctx, tailConnectTimeout)
			err = cl.Ping(pingCtx)
			cancel()
			if err != nil && cmd.Context().Err() == nil {
				return fmt.Errorf("kafka %s unreachable: %w", strings.Join(k.Brokers, ","), err)
			}
			out := bufio.NewWriter(os.Stdout)
			defer out.Flush()
			n := 0
			for max <= 0 || n < max {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					return nil
				}
				var ferr error
				fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("%s/%d: %w", t, p, err) })
				if ferr != nil {
					return ferr
				}
				for it := fs.RecordIter(); !it.Done() && (max <= 0 || n < max); {
					r := it.Next()
					if isDeadLetter(r) {
						out.Write(deadLetterLine(ctx, dec, r))
						out.WriteByte('\n')
						n++
						continue
					}
					if r.Value == nil {
						continue
					}
					changes, err := dec.DecodeContext(ctx, headerValue(r, schemas.HeaderFormat), r.Value)
					if errors.Is(err, schemas.ErrDDL) {
						fmt.Fprintf(os.Stderr, "kanal tail: %s/%d@%d: skipped %s\n", r.Topic, r.Partition, r.Offset, describeDDL(r.Value))
						continue
					}
					if err != nil {
						fmt.Fprintf(os.Stderr, "kanal tail: %s/%d@%d key %q: %v\n", r.Topic, r.Partition, r.Offset, r.Key, err)
						continue
					}
					for _, c := range changes {
						b, _ := c.MarshalJSON()
						out.Write(b)
						out.WriteByte('\n')
						n++
					}
				}
				out.Flush()
			}
			return nil
		},
	}
	conn.add(cmd, "")
	cmd.Flags().StringVar(&tables, "tables", "", "comma-separated db.table patterns (glob)")
	cmd.Flags().StringVar(&registry, "schema-registry", "", "schema registry URL (no auth, no client TLS), to read avro-confluent records; replaces the file's kafka.schema_registry")
	cmd.Flags().StringVar(&dlqGroup, "dlq", "", "print the dead letters of this consumer group instead of changes")
	cmd.Flags().BoolVar(&fromBeginning, "from-beginning", false, "start at the oldest retained change instead of new ones")
	cmd.Flags().IntVar(&max, "max", 0, "exit after printing this many changes (0 = no limit)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "exit after this long (0 = until interrupted)")
	return cmd
}

// tailConnectTimeout bounds tail's first request to the brokers.
const tailConnectTimeout = 10 * time.Second

// describeDDL names a Canal DDL (or other non-row) message: its type, table and
// statement.
func describeDDL(value []byte) string {
	var m struct {
		Database, Table, Type, SQL string
	}
	_ = json.Unmarshal(value, &m)
	return strings.TrimSpace(fmt.Sprintf("Canal %s message for %s.%s: %s", m.Type, m.Database, m.Table, m.SQL))
}

func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// topicRegex turns db.table glob patterns into one regular expression over topic names.
func topicRegex(prefix string, patterns []string) (string, error) {
	var alts []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		db, table, ok := strings.Cut(p, ".")
		if !ok || db == "" || table == "" {
			return "", fmt.Errorf("table pattern %q must look like db.table or db.*", p)
		}
		alts = append(alts, globRE(db)+`\.`+globRE(table))
	}
	re := "^" + regexp.QuoteMeta(prefix) + `\.(` + strings.Join(alts, "|") + ")$"
	if _, err := regexp.Compile(re); err != nil {
		return "", err
	}
	return re, nil
}

func globRE(g string) string {
	var b strings.Builder
	for _, r := range g {
		switch r {
		case '*':
			b.WriteString(`[^.]*`)
		case '?':
			b.WriteString(`[^.]`)
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	return b.String()
}

func isDeadLetter(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, "kanal.dlq.") {
			return true
		}
	}
	return false
}

// deadLetterLine is a dead letter as one JSON object: its kanal.dlq.* headers
// (why and where from), key and change, decoded with dec (and so with the
// schemas of an Avro record).
func deadLetterLine(ctx context.Context, dec *schemas.Decoder, r *kgo.Record) []byte {
	dlq := map[string]string{}
	for _, h := range r.Headers {
		if name, ok := strings.CutPrefix(h.Key, "kanal.dlq."); ok {
			dlq[name] = string(h.Value)
		}
	}
	line := struct {
		DLQ        map[string]string `json:"dlq"`
		Key        string            `json:"key"`
		Change     json.RawMessage   `json:"change"`
		ValueError string            `json:"value_error,omitempty"`
	}{DLQ: dlq, Key: string(r.Key), Change: json.RawMessage("null")}
	switch changes, err := dec.DecodeContext(ctx, headerValue(r, schemas.HeaderFormat), r.Value); {
	case r.Value == nil:
		line.ValueError = "tombstone"
	case err != nil:
		line.ValueError = err.Error()
	case len(changes) == 1:
		line.Change, _ = changes[0].MarshalJSON()
	default:
		var parts [][]byte
		for _, c := range changes {
			b, _ := c.MarshalJSON()
			parts = append(parts, b)
		}
		line.Change = append(append([]byte("["), bytes.Join(parts, []byte(","))...), ']')
	}
	b, _ := json.Marshal(line)
	return b
}
