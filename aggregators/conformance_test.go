package aggregators

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kanal-cdc/kanal/consumer/consumertest"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestConformance runs the consumer conformance suite against aggregators on
// Postgres and MariaDB. Its rows are read back from a summary grouped by every
// column of the suite's table: each live source row is one group of count 1, so
// the summary must hold exactly the source's final rows.
func TestConformance(t *testing.T) {
	m := testenv.MariaDB(t)
	var n atomic.Int64
	for _, te := range []*targetEnv{postgresTarget(t), mariadbTarget(t, m)} {
		t.Run(te.name, func(t *testing.T) {
			consumertest.Run(t, func(t *testing.T) consumertest.Sink {
				id := n.Add(1)
				cfg := te.config(fmt.Sprintf("ct%d", id))
				cfg.OffsetsTable = fmt.Sprintf("ct%d_offsets", id) // the suite uses one group name
				table := fmt.Sprintf("ct%d_rows", id)
				cfg.Summaries = []SummaryConfig{{Table: table, Source: "ct.items",
					GroupBy: []string{"id", "name", "amount", "data"}, Measures: []string{"count"}}}
				a, err := New(cfg, cdctest.Logger(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(a.Close)
				return consumertest.Sink{Handler: a, Versioned: true, State: func(ctx context.Context) (map[string]map[string]string, error) {
					return conformanceState(ctx, te, table)
				}}
			})
		})
	}
}

func conformanceState(ctx context.Context, te *targetEnv, table string) (map[string]map[string]string, error) {
	q := `SELECT id::text, name, amount::text, encode(data, 'hex'), row_count FROM "` + table + `"`
	if te.driver == DriverMySQL {
		q = "SELECT CAST(id AS CHAR), name, CAST(amount AS CHAR), LOWER(HEX(data)), row_count FROM `" + table + "`"
	}
	out := map[string]map[string]string{}
	rows, err := te.db.QueryContext(ctx, q)
	if err != nil {
		if strings.Contains(err.Error(), "exist") { // nothing applied yet
			return out, nil
		}
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var name, amount, data *string
		var count int64
		if err := rows.Scan(&id, &name, &amount, &data, &count); err != nil {
			return nil, err
		}
		if count != 1 {
			return nil, fmt.Errorf("row %s counted %d times", id, count)
		}
		r := map[string]string{"id": id, "name": "NULL", "amount": "NULL", "data": "NULL"}
		if name != nil {
			r["name"] = *name
		}
		if amount != nil {
			r["amount"] = *amount
		}
		if data != nil {
			r["data"] = "0x" + *data
		}
		out["ct.items:"+id] = r
	}
	return out, rows.Err()
}
