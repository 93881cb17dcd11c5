package handlers

import (
	"context"
	"strings"

	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/consumer"
	essink "github.com/kanal-cdc/kanal/sinks/elasticsearch"
	memcachedsink "github.com/kanal-cdc/kanal/sinks/memcached"
	rabbitmqsink "github.com/kanal-cdc/kanal/sinks/rabbitmq"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// Builtin returns a registry holding kanal's own handler types. Add yours to
// it to run them from the same file.
//
//   - stdout: prints each change as a JSON line (StdoutOptions).
//   - redis: the Redis materialiser; options are a sinks/redis Config
//     (docs/redis.md).
//   - aggregate: summary tables in Postgres or MySQL; options are an
//     aggregators Config (docs/aggregators.md). Its tables must cover the
//     summaries' sources.
//   - sqlmirror: row copies into Postgres, MySQL/MariaDB or Phoenix; options
//     are a sinks/sqlmirror Config (docs/sqlmirror.md).
//   - elasticsearch: Elasticsearch/OpenSearch documents; options are a
//     sinks/elasticsearch Config (docs/elasticsearch.md).
//   - rabbitmq: publishes changes to a RabbitMQ exchange with confirms; options
//     are a sinks/rabbitmq Config (docs/rabbitmq.md).
//   - memcached: rows as JSON in memcached, version-guarded; options are a
//     sinks/memcached Config (docs/memcached.md).
//
// The sinks' own name setting is the entry's name, not an option.
func Builtin() *Factories {
	return &Factories{byName: map[string]Factory{
		"stdout":        Stdout(),
		"redis":         Redis(),
		"aggregate":     Aggregate(),
		"sqlmirror":     SQLMirror(),
		"elasticsearch": Elasticsearch(),
		"rabbitmq":      RabbitMQ(),
		"memcached":     Memcached(),
	}}
}

// Redis is the factory of the redis handler type.
func Redis() Factory {
	return Typed[redissink.Config]{
		Defaults: redissink.DefaultConfig,
		Reserved: []string{"name"},
		Build: func(spec *Spec, o *redissink.Config, env Env) (consumer.Handler, error) {
			o.Name = spec.Name
			return redissink.New(*o, env.Log)
		},
		Probe: redisProbes,
	}
}

// Aggregate is the factory of the aggregate handler type.
func Aggregate() Factory {
	return Typed[aggregators.Config]{
		Defaults: aggregators.DefaultConfig,
		Reserved: []string{"name"},
		Build: func(spec *Spec, o *aggregators.Config, env Env) (consumer.Handler, error) {
			o.Name = spec.Name
			return aggregators.New(*o, env.Log)
		},
		Probe: aggregateProbes,
	}
}

// SQLMirror is the factory of the sqlmirror handler type.
func SQLMirror() Factory {
	return Typed[sqlmirror.Config]{
		Defaults: sqlmirror.DefaultConfig,
		Reserved: []string{"name"},
		Build: func(spec *Spec, o *sqlmirror.Config, env Env) (consumer.Handler, error) {
			o.Name = spec.Name
			return sqlmirror.New(*o, env.Log)
		},
		Probe: sqlmirrorProbes,
	}
}

// pinger is a handler that can check its target, for config check --connect.
type pinger interface {
	consumer.Handler
	Ping(ctx context.Context) error
}

// pingProbe builds the handler (which does not connect) and pings its target.
func pingProbe(server string, build func() (pinger, error)) []Probe {
	return []Probe{{Server: server, Check: func(ctx context.Context) error {
		h, err := build()
		if err != nil {
			return err
		}
		defer h.(interface{ Close() error }).Close()
		return h.Ping(ctx)
	}}}
}

// Elasticsearch is the factory of the elasticsearch handler type.
func Elasticsearch() Factory {
	return Typed[essink.Config]{
		Defaults: essink.DefaultConfig,
		Reserved: []string{"name"},
		Build: func(spec *Spec, o *essink.Config, env Env) (consumer.Handler, error) {
			o.Name = spec.Name
			return essink.New(*o, env.Log)
		},
		Probe: func(spec *Spec, o *essink.Config) []Probe {
			c := *o
			c.Name = spec.Name
			return pingProbe("elasticsearch "+strings.Join(c.URLs, ","), func() (pinger, error) { return essink.New(c, nil) })
		},
	}
}

// RabbitMQ is the factory of the rabbitmq handler type.
func RabbitMQ() Factory {
	return Typed[rabbitmqsink.Config]{
		Defaults: rabbitmqsink.DefaultConfig,
		Reserved: []string{"name"},
		Build: func(spec *Spec, o *rabbitmqsink.Config, env Env) (consumer.Handler, error) {
			o.Name = spec.Name
			return rabbitmqsink.New(*o, env.Log)
		},
		Probe: func(spec *Spec, o *rabbitmqsink.Config) []Probe {
			c := *o
			c.Name = spec.Name
			return pingProbe("rabbitmq "+c.Redacted(), func() (pinger, error) { return rabbitmqsink.New(c, nil) })
		},
	}
}

// Memcached is the factory of the memcached handler type.
func Memcached() Factory {
	return Typed[memcachedsink.Config]{
		Defaults: memcachedsink.DefaultConfig,
		Reserved: []string{"name"},
		Build: func(spec *Spec, o *memcachedsink.Config, env Env) (consumer.Handler, error) {
			o.Name = spec.Name
			return memcachedsink.New(*o, env.Log)
		},
		Probe: func(spec *Spec, o *memcachedsink.Config) []Probe {
			c := *o
			c.Name = spec.Name
			return pingProbe("memcached "+strings.Join(c.Servers, ","), func() (pinger, error) { return memcachedsink.New(c, nil) })
		},
	}
}
