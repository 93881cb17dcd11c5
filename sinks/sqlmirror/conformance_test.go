package sqlmirror_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/kanal-cdc/kanal/consumer/consumertest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/schemas"
	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

func ctItemsKey(r map[string]string) string {
	return string(schemas.AppendKey(nil, "ct", "items", []any{r["id"]}))
}

// TestConformancePostgres runs the consumertest suite against a real
// PostgreSQL target: every check gets a table and offsets table of its own.
func TestConformancePostgres(t *testing.T) {
	pg := testenv.Postgres(t)
	db := cdctest.OpenDB(t, "pgx", pg.DSN)
	var n atomic.Int64
	consumertest.Run(t, func(t *testing.T) consumertest.Sink {
		i := n.Add(1)
		table := fmt.Sprintf("ct_items_%d", i)
		mustExec(t, db, fmt.Sprintf(`CREATE TABLE %s (id bigint PRIMARY KEY, name text, amount numeric(10,2), data bytea,
			_kanal_version bigint NOT NULL)`, table))
		cfg := sqlmirror.DefaultConfig()
		cfg.Name = "pg"
		cfg.Dialect = sqlmirror.Postgres
		cfg.DSN = pg.DSN
		cfg.OffsetsTable = fmt.Sprintf("offsets_%d", i)
		cfg.Tables = []sqlmirror.TableConfig{{Source: "ct.items", Target: table}}
		h := newMirror(t, cfg)
		q := fmt.Sprintf(`SELECT id::text AS id, name, amount::text AS amount, data FROM %s`, table)
		return consumertest.Sink{Handler: h, Versioned: true, State: func(ctx context.Context) (map[string]map[string]string, error) {
			return cdctest.ReadRows(ctx, db, q, ctItemsKey, "data")
		}}
	})
}

// TestConformanceMariaDB runs the consumertest suite against a real MariaDB
// target.
func TestConformanceMariaDB(t *testing.T) {
	m := testenv.MariaDB(t)
	mustExec(t, m.DB(), "CREATE DATABASE ct")
	db := cdctest.OpenDB(t, "mysql", m.DSN("ct"))
	var n atomic.Int64
	consumertest.Run(t, func(t *testing.T) consumertest.Sink {
		i := n.Add(1)
		table := fmt.Sprintf("items_%d", i)
		mustExec(t, db, fmt.Sprintf(`CREATE TABLE %s (id BIGINT PRIMARY KEY, name VARCHAR(64) CHARACTER SET utf8mb4,
			amount DECIMAL(10,2), data VARBINARY(16), _kanal_version BIGINT NOT NULL)`, table))
		cfg := sqlmirror.DefaultConfig()
		cfg.Name = "my"
		cfg.Dialect = sqlmirror.MySQL
		cfg.DSN = m.DSN("ct")
		cfg.OffsetsTable = fmt.Sprintf("offsets_%d", i)
		cfg.Tables = []sqlmirror.TableConfig{{Source: "ct.items", Target: table}}
		h := newMirror(t, cfg)
		q := fmt.Sprintf(`SELECT id, name, amount, data FROM %s`, table)
		return consumertest.Sink{Handler: h, Versioned: true, State: func(ctx context.Context) (map[string]map[string]string, error) {
			return cdctest.ReadRows(ctx, db, q, ctItemsKey, "data")
		}}
	})
}
