package consumertest_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/consumer/consumertest"
	"github.com/kanal-cdc/kanal/consumer/internal/pgtest"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

var tables atomic.Int32

// TestPostgresSinks runs the suite against both Postgres test sinks: the
// versioned one (idempotent by row version) and the transactional one (offsets
// stored with the data).
func TestPostgresSinks(t *testing.T) {
	pg := testenv.Postgres(t)
	ctx := context.Background()
	newTable := func() string { return fmt.Sprintf("ct_%d", tables.Add(1)) }
	t.Run("Versioned", func(t *testing.T) {
		consumertest.Run(t, func(t *testing.T) consumertest.Sink {
			s, err := pgtest.NewVersioned(ctx, pg.DSN, "pgv", newTable())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			return consumertest.Sink{Handler: s, State: s.State, Versioned: true}
		})
	})
	t.Run("Transactional", func(t *testing.T) {
		consumertest.Run(t, func(t *testing.T) consumertest.Sink {
			s, err := pgtest.NewTransactional(ctx, pg.DSN, "pgx", newTable())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
			return consumertest.Sink{Handler: s, State: s.State}
		})
	})
	_ = time.Second
}
