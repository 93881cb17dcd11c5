package handlers

import (
	"github.com/kanal-cdc/kanal/aggregators"
	"github.com/kanal-cdc/kanal/consumer"
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
//
// The sinks' own name setting is the entry's name, not an option.
func Builtin() *Factories {
	return &Factories{byName: map[string]Factory{
		"stdout":    Stdout(),
		"redis":     Redis(),
		"aggregate": Aggregate(),
		"sqlmirror": SQLMirror(),
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
