package handlers

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/kanal-cdc/kanal/aggregators"
	redissink "github.com/kanal-cdc/kanal/sinks/redis"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

// redisProbes pings every instance with the handler's credentials.
func redisProbes(_ *Spec, o *redissink.Config) []Probe {
	names := make([]string, 0, len(o.Instances))
	for n := range o.Instances {
		names = append(names, n)
	}
	sort.Strings(names)
	var ps []Probe
	for _, n := range names {
		in := o.Instances[n]
		ps = append(ps, Probe{
			Server: fmt.Sprintf("redis instance %s (%s db %d)", n, in.Addr, in.DB),
			Check: func(ctx context.Context) error {
				opts, err := in.ClientOptions(n)
				if err != nil {
					return err
				}
				opts.MaxRetries = -1
				cl := redis.NewClient(opts)
				defer cl.Close()
				return cl.Ping(ctx).Err()
			},
		})
	}
	return ps
}

// aggregateProbes connects to the target database through the aggregator's
// own connection settings (TLS, password file), as a batch will.
func aggregateProbes(spec *Spec, o *aggregators.Config) []Probe {
	cfg := *o
	cfg.Name = spec.Name
	t := cfg.Target
	return []Probe{{
		Server: t.Driver + " target " + dsnAddr(t.Driver, t.DSN),
		Check: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, t.ConnectTimeout)
			defer cancel()
			a, err := aggregators.New(cfg, nil)
			if err != nil {
				return err
			}
			defer a.Close()
			return a.Ping(ctx)
		},
	}}
}

// sqlmirrorProbes connects with the mirror's own connection settings (for
// MariaDB targets with write_server_id, that setting needs a privilege the
// check then proves).
func sqlmirrorProbes(spec *Spec, o *sqlmirror.Config) []Probe {
	cfg := *o
	cfg.Name = spec.Name
	return []Probe{{
		Server: cfg.Dialect + " target " + dsnAddr(cfg.Dialect, cfg.DSN),
		Check: func(ctx context.Context) error {
			h, err := sqlmirror.New(cfg, nil)
			if err != nil {
				return err
			}
			defer h.Close()
			return h.DB().PingContext(ctx)
		},
	}}
}

// dsnAddr returns where a DSN points, without its user or password: for people
// reading `kanal config check` output.
func dsnAddr(driver, dsn string) string {
	switch driver {
	case "postgres":
		if pc, err := pgx.ParseConfig(dsn); err == nil {
			return fmt.Sprintf("(%s database %s)", net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))), pc.Database)
		}
	case "mysql":
		if mc, err := mysql.ParseDSN(dsn); err == nil {
			return fmt.Sprintf("(%s database %s)", mc.Addr, mc.DBName)
		}
	default:
		if u, err := url.Parse(dsn); err == nil && u.Host != "" {
			return "(" + u.Host + ")"
		}
	}
	return "(dsn not readable)"
}
