// Command demoload is the workload, progress line and verification of
// scripts/demo.sh: it writes a realistic earnings ledger into the demo's MariaDB,
// shows what the consumer groups applied, and then checks that the Postgres
// summaries equal the ledger's GROUP BY, that Redis equals the users table, and
// how fresh the summary was (binlog commit → summary row updated). With
// --preload N it only writes the users and N earnings that exist before kanal
// starts (the demo's initial snapshot brings them to the targets), and exits.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

type options struct {
	mysql, pg, redisAddr, metrics, keyPrefix string
	redisHandler, aggHandler                 string
	seconds, writers, users, rate            int
	preload                                  int
}

func main() {
	var o options
	flag.StringVar(&o.mysql, "mysql", "", "go-sql-driver DSN of the source (database shop)")
	flag.StringVar(&o.pg, "pg", "", "Postgres DSN of the summaries")
	flag.StringVar(&o.redisAddr, "redis", "", "Redis address")
	flag.StringVar(&o.metrics, "metrics", "", "URL of `kanal consume`'s /metrics")
	flag.StringVar(&o.keyPrefix, "key-prefix", "kc:", "Redis key prefix of the users")
	flag.StringVar(&o.redisHandler, "redis-handler", "redis-users", "handler name of the Redis group")
	flag.StringVar(&o.aggHandler, "agg-handler", "earnings-summary", "handler name of the summary group")
	flag.IntVar(&o.seconds, "seconds", 30, "how long to write")
	flag.IntVar(&o.writers, "writers", 4, "concurrent writers")
	flag.IntVar(&o.users, "users", 300, "users to start with")
	flag.IntVar(&o.rate, "rate", 500, "target transactions per second, all writers together (0: as fast as possible)")
	flag.IntVar(&o.preload, "preload", 0, "only write the users and this many earnings (before kanal starts), then exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemoload:", err)
		os.Exit(1)
	}
}

type demo struct {
	o       options
	src     *sql.DB
	pg      *pgxpool.Pool
	rdb     *redis.Client
	written atomic.Int64 // rows changed in the source
	txns    atomic.Int64
	maxUser atomic.Int64
	// maxEarning is the highest earning id when the workload starts.
	maxEarning int64

	mu        sync.Mutex
	freshness []time.Duration // under load
	idle      []time.Duration // after the workload
	timeouts  int
	probes    int64 // probe earnings committed
}

func run(ctx context.Context, o options) error {
	src, err := sql.Open("mysql", o.mysql)
	if err != nil {
		return err
	}
	defer src.Close()
	src.SetMaxOpenConns(o.writers + 4)
	if o.preload > 0 {
		return (&demo{o: o, src: src}).preload(ctx)
	}
	pg, err := pgxpool.New(ctx, o.pg)
	if err != nil {
		return err
	}
	defer pg.Close()
	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr})
	defer rdb.Close()
	d := &demo{o: o, src: src, pg: pg, rdb: rdb}
	var users sql.NullInt64
	if err := src.QueryRowContext(ctx, "SELECT MAX(id) FROM users").Scan(&users); err != nil {
		return err
	}
	if users.Valid {
		// Pre-loaded before kanal started.
		var earnings sql.NullInt64
		if err := src.QueryRowContext(ctx, "SELECT MAX(id) FROM earnings").Scan(&earnings); err != nil {
			return err
		}
		d.maxUser.Store(users.Int64)
		d.maxEarning = earnings.Int64
		if err := d.waitCaughtUp(ctx); err != nil {
			return err
		}
	} else if err := d.seed(ctx); err != nil {
		return fmt.Errorf("seed: %w", err)
	}

	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, time.Duration(o.seconds)*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, o.writers+1)
	for i := 0; i < o.writers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- d.writer(wctx, uint64(i)) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); errc <- d.prober(wctx, &d.freshness) }()
	tick := time.NewTicker(time.Second)
	for wctx.Err() == nil {
		select {
		case <-tick.C:
			d.progress(ctx, start)
		case <-wctx.Done():
		}
	}
	tick.Stop()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	wrote := time.Since(start)
	d.progress(ctx, start)
	fmt.Printf("\nworkload done: %d transactions, %d rows written in %.0fs\n", d.txns.Load(), d.written.Load(), wrote.Seconds())
	if err := d.verify(ctx, start, wrote); err != nil {
		return err
	}
	// Freshness without load: the pipeline's own latency.
	ictx, icancel := context.WithTimeout(ctx, 3*time.Second)
	defer icancel()
	if err := d.prober(ictx, &d.idle); err != nil {
		return err
	}
	p50, p99, worst, n := percentiles(&d.mu, &d.idle)
	fmt.Printf("freshness idle (same probe, no other writes), %d probes: p50 %s  p99 %s  max %s\n",
		n, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), worst.Round(100*time.Microsecond))
	return nil
}

var kinds = []string{"order", "referral", "bonus", "refund"}

// preload writes the users and o.preload earnings, in multi-row INSERTs.
func (d *demo) preload(ctx context.Context) error {
	if err := d.seed(ctx); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(2026, 1))
	statuses := []string{"pending", "settled", "settled", "settled", "reversed"}
	start := time.Now()
	for done := 0; done < d.o.preload; {
		var b strings.Builder
		b.WriteString("INSERT INTO earnings (user_id, kind, amount, status, created_at) VALUES ")
		n := min(2000, d.o.preload-done)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(%d, '%s', %d.%02d, '%s', NOW(6) - INTERVAL %d MINUTE)", d.user(r), kinds[r.IntN(len(kinds))],
				r.IntN(500), r.IntN(100), statuses[r.IntN(len(statuses))], r.IntN(100000))
		}
		if _, err := d.src.ExecContext(ctx, b.String()); err != nil {
			return err
		}
		done += n
	}
	fmt.Printf("pre-loaded %d users and %d earnings in %.1fs\n", d.o.users, d.o.preload, time.Since(start).Seconds())
	return nil
}

func (d *demo) seed(ctx context.Context) error {
	// User 1 is the freshness probe's; the workload never touches it.
	if _, err := d.src.ExecContext(ctx, "INSERT INTO users (id, name, email, balance, created_at) VALUES (1, 'probe', 'probe@example.com', 0, NOW(3))"); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("INSERT INTO users (name, email, balance, created_at) VALUES ")
	for i := 2; i <= d.o.users; i++ {
		if i > 2 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "('user %d', 'u%d@example.com', 0, NOW(3))", i, i)
	}
	res, err := d.src.ExecContext(ctx, b.String())
	if err != nil {
		return err
	}
	n, _ := res.RowsAffected()
	d.written.Add(n + 1)
	d.maxUser.Store(int64(d.o.users))
	return nil
}

// user picks a user (2..max), skewed: a few users earn most.
func (d *demo) user(r *rand.Rand) int64 {
	m := d.maxUser.Load() - 1
	u := int64(float64(m) * r.Float64() * r.Float64() * r.Float64())
	return 2 + min(u, m-1)
}

func (d *demo) writer(ctx context.Context, id uint64) error {
	r := rand.New(rand.NewPCG(id, 42))
	maxEarning := d.maxEarning
	var pace *time.Ticker
	if d.o.rate > 0 {
		pace = time.NewTicker(time.Second * time.Duration(d.o.writers) / time.Duration(d.o.rate))
		defer pace.Stop()
	}
	for ctx.Err() == nil {
		if pace != nil {
			select {
			case <-pace.C:
			case <-ctx.Done():
				return nil
			}
		}
		tx, err := d.src.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		n := 1 + r.IntN(4)
		var rows int64
		for i := 0; i < n && err == nil; i++ {
			var res sql.Result
			switch p := r.IntN(100); {
			case p < 55:
				status := "pending"
				if r.IntN(10) < 4 {
					status = "settled"
				}
				res, err = tx.ExecContext(ctx, "INSERT INTO earnings (user_id, kind, amount, status, created_at) VALUES (?, ?, ?, ?, NOW(6))",
					d.user(r), kinds[r.IntN(len(kinds))], fmt.Sprintf("%d.%02d", r.IntN(500), r.IntN(100)), status)
				if err == nil {
					if last, e := res.LastInsertId(); e == nil {
						maxEarning = max(maxEarning, last)
					}
				}
			case p < 80:
				res, err = tx.ExecContext(ctx, "UPDATE earnings SET status = 'settled' WHERE id = ? AND status = 'pending' AND user_id <> 1", 1+r.Int64N(maxEarning+1))
			case p < 84:
				res, err = tx.ExecContext(ctx, "UPDATE earnings SET status = 'reversed' WHERE id = ? AND user_id <> 1", 1+r.Int64N(maxEarning+1))
			case p < 87:
				res, err = tx.ExecContext(ctx, "UPDATE earnings SET user_id = ? WHERE id = ? AND user_id <> 1", d.user(r), 1+r.Int64N(maxEarning+1))
			case p < 89:
				res, err = tx.ExecContext(ctx, "UPDATE earnings SET amount = amount + 1.05 WHERE id = ? AND user_id <> 1", 1+r.Int64N(maxEarning+1))
			case p < 90:
				res, err = tx.ExecContext(ctx, "DELETE FROM earnings WHERE id = ? AND user_id <> 1", 1+r.Int64N(maxEarning+1))
			case p < 93:
				res, err = tx.ExecContext(ctx, "INSERT INTO users (name, email, balance, created_at) VALUES (?, ?, 0, NOW(3))",
					fmt.Sprintf("new user %d", r.IntN(1e6)), fmt.Sprintf("n%d@example.com", r.IntN(1e6)))
				if err == nil {
					if last, e := res.LastInsertId(); e == nil && last > d.maxUser.Load() {
						d.maxUser.Store(last)
					}
				}
			case p < 99:
				res, err = tx.ExecContext(ctx, "UPDATE users SET balance = balance + ?, email = ? WHERE id = ?",
					fmt.Sprintf("%d.%02d", r.IntN(100), r.IntN(100)), fmt.Sprintf("e%d@example.com", r.IntN(1e6)), d.user(r))
			default:
				res, err = tx.ExecContext(ctx, "UPDATE users SET name = NULL WHERE id = ?", d.user(r))
			}
			if err == nil {
				a, _ := res.RowsAffected()
				rows += a
			}
		}
		if err == nil {
			err = tx.Commit()
		} else {
			tx.Rollback()
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		d.written.Add(rows)
		d.txns.Add(1)
	}
	return nil
}

// prober measures freshness: it commits one settled earning of the probe user
// at a time and waits until the Postgres summary counts it.
func (d *demo) prober(ctx context.Context, into *[]time.Duration) error {
	for ctx.Err() == nil {
		if _, err := d.src.ExecContext(ctx, "INSERT INTO earnings (user_id, kind, amount, status, created_at) VALUES (1, 'bonus', 0.01, 'settled', NOW(6))"); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		committed := time.Now()
		count := atomic.AddInt64(&d.probes, 1)
		d.written.Add(1)
		deadline := committed.Add(10 * time.Second)
		for {
			var got int64
			err := d.pg.QueryRow(context.Background(), "SELECT earnings FROM user_earnings WHERE user_id = 1").Scan(&got)
			if err == nil && got >= count {
				d.mu.Lock()
				*into = append(*into, time.Since(committed))
				d.mu.Unlock()
				break
			}
			if time.Now().After(deadline) {
				d.mu.Lock()
				d.timeouts++
				d.mu.Unlock()
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func percentiles(mu *sync.Mutex, samples *[]time.Duration) (p50, p99, worst time.Duration, n int) {
	mu.Lock()
	s := append([]time.Duration(nil), (*samples)...)
	mu.Unlock()
	if len(s) == 0 {
		return 0, 0, 0, 0
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1], len(s)
}

var sampleRE = regexp.MustCompile(`^([a-z_]+)\{([^}]*)\} ([0-9.e+-]+)$`)

// metrics reads applied records per handler and lag per group from /metrics.
func (d *demo) metrics(ctx context.Context) (applied, lag map[string]float64, err error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.o.metrics, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	applied, lag = map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		labels := map[string]string{}
		for _, kv := range strings.Split(m[2], ",") {
			k, val, _ := strings.Cut(kv, "=")
			labels[k] = strings.Trim(val, `"`)
		}
		switch m[1] {
		case "kanal_consumer_records_applied_total":
			applied[labels["handler"]] += v
		case "kanal_consumer_lag_records":
			lag[strings.TrimPrefix(labels["group"], "kanal-")] += v
		}
	}
	return applied, lag, nil
}

// waitCaughtUp waits until both consumer groups have applied the snapshot of
// the pre-loaded rows (lag 0), so that the freshness measured under load is the
// pipeline's, not the backlog's.
func (d *demo) waitCaughtUp(ctx context.Context) error {
	start := time.Now()
	for {
		applied, lag, err := d.metrics(ctx)
		if err == nil {
			line := fmt.Sprintf("[%3.0fs] consumers catching up on the snapshot:", time.Since(start).Seconds())
			done := true
			for _, h := range []string{d.o.redisHandler, d.o.aggHandler} {
				line += fmt.Sprintf(" | %s applied %7.0f lag %6.0f", h, applied[h], lag[h])
				done = done && applied[h] > 0 && lag[h] == 0
			}
			fmt.Printf("\r%s\033[K", line)
			if done {
				fmt.Println()
				return nil
			}
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("the consumers did not catch up on the snapshot within 5 minutes (%v)", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (d *demo) progress(ctx context.Context, start time.Time) {
	el := time.Since(start)
	line := fmt.Sprintf("[%3.0fs] written %7d rows (%5.0f/s)", el.Seconds(), d.written.Load(), float64(d.written.Load())/el.Seconds())
	if applied, lag, err := d.metrics(ctx); err == nil {
		for _, h := range []string{d.o.redisHandler, d.o.aggHandler} {
			line += fmt.Sprintf(" | %s applied %7.0f lag %4.0f", h, applied[h], lag[h])
		}
	} else {
		line += " | metrics: " + err.Error()
	}
	if p50, p99, _, n := percentiles(&d.mu, &d.freshness); n > 0 {
		line += fmt.Sprintf(" | freshness p50 %s p99 %s", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	}
	fmt.Printf("\r%s\033[K", line)
}

// verify waits (up to a minute) until the summaries and Redis match the source,
// then prints the comparison and the freshness figures.
func (d *demo) verify(ctx context.Context, start time.Time, wrote time.Duration) error {
	checks := []struct {
		name, source, summary string
		groups                int
	}{
		{"user_earnings (per user)",
			"SELECT user_id, COUNT(*), SUM(amount) FROM earnings WHERE status = 'settled' GROUP BY user_id",
			"SELECT user_id::text, earnings::text, total::text FROM user_earnings", 1},
		{"user_kind_earnings (per user and kind)",
			"SELECT user_id, kind, COUNT(*), SUM(amount) FROM earnings WHERE status = 'settled' GROUP BY user_id, kind",
			"SELECT user_id::text, kind, earnings::text, total::text FROM user_kind_earnings", 2},
	}
	deadline := time.Now().Add(time.Minute)
	waitStart := time.Now()
	var problems []string
	var results []string
	for {
		problems, results = nil, nil
		for _, c := range checks {
			want, err := d.mysqlText(ctx, c.source, c.groups)
			if err != nil {
				return err
			}
			got, err := d.pgText(ctx, c.summary, c.groups)
			if err != nil {
				return err
			}
			if diff := diff(want, got); diff != "" {
				problems = append(problems, c.name+": "+diff)
			} else {
				results = append(results, fmt.Sprintf("OK  %-40s %6d groups == ledger GROUP BY (count and DECIMAL sum, compared as text)", c.name, len(want)))
			}
		}
		n, err := d.checkRedis(ctx)
		if err != nil {
			problems = append(problems, "redis: "+err.Error())
		} else {
			results = append(results, fmt.Sprintf("OK  %-40s %6d rows   == users table (every column)", "Redis "+d.o.keyPrefix+"shop.users:*", n))
		}
		if len(problems) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Printf("caught up %s after the workload stopped\n\n== verification\n", time.Since(waitStart).Round(time.Millisecond))
	for _, r := range results {
		fmt.Println(r)
	}
	applied, _, err := d.metrics(ctx)
	if err == nil {
		fmt.Printf("aggregator: %.0f ledger changes applied, %.0f/s while the workload ran\n", applied[d.o.aggHandler], applied[d.o.aggHandler]/wrote.Seconds())
	}
	p50, p99, worst, n := percentiles(&d.mu, &d.freshness)
	d.mu.Lock()
	timeouts := d.timeouts
	d.mu.Unlock()
	fmt.Printf("freshness (probe earning committed → visible in user_earnings), %d probes under load: p50 %s  p99 %s  max %s  (%d timed out)\n",
		n, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), worst.Round(100*time.Microsecond), timeouts)
	if len(problems) > 0 {
		return fmt.Errorf("MISMATCH:\n%s", strings.Join(problems, "\n"))
	}
	return nil
}

func (d *demo) mysqlText(ctx context.Context, q string, groups int) (map[string]string, error) {
	rows, err := d.src.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	out := map[string]string{}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		s := make([]string, len(vals))
		for i, v := range vals {
			s[i] = "NULL"
			if v.Valid {
				s[i] = v.String
			}
		}
		out[strings.Join(s[:groups], "|")] = strings.Join(s[groups:], "|")
	}
	return out, rows.Err()
}

func (d *demo) pgText(ctx context.Context, q string, groups int) (map[string]string, error) {
	rows, err := d.pg.Query(ctx, q)
	if err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return map[string]string{}, nil // not created yet: nothing applied
		}
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		s := make([]string, len(vals))
		for i, v := range vals {
			s[i] = "NULL"
			if v != nil {
				s[i] = fmt.Sprint(v)
			}
		}
		out[strings.Join(s[:groups], "|")] = strings.Join(s[groups:], "|")
	}
	return out, rows.Err()
}

// checkRedis compares every users row with its Redis hash, and the number of
// user keys with the number of rows.
func (d *demo) checkRedis(ctx context.Context) (int, error) {
	rows, err := d.src.QueryContext(ctx, "SELECT id, name, email, balance, created_at FROM users")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		vals := make([]sql.NullString, 4)
		if err := rows.Scan(&id, &vals[0], &vals[1], &vals[2], &vals[3]); err != nil {
			return 0, err
		}
		key := d.o.keyPrefix + "shop.users:" + id
		h, err := d.rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return 0, err
		}
		if len(h) == 0 {
			return 0, fmt.Errorf("%s missing", key)
		}
		for i, col := range []string{"name", "email", "balance", "created_at"} {
			got, ok := h[col]
			if vals[i].Valid != ok || ok && got != vals[i].String {
				return 0, fmt.Errorf("%s.%s: redis %q (present %v), users table %q (NULL %v)", key, col, got, ok, vals[i].String, !vals[i].Valid)
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	keys := 0
	iter := d.rdb.Scan(ctx, 0, d.o.keyPrefix+"shop.users:*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
	}
	if err := iter.Err(); err != nil {
		return 0, err
	}
	if keys != n {
		return 0, fmt.Errorf("%d user keys in Redis, %d rows in users", keys, n)
	}
	return n, nil
}

func diff(want, got map[string]string) string {
	var lines []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			lines = append(lines, fmt.Sprintf("missing group %s (want %s)", k, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("group %s: want %s, got %s", k, w, g))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			lines = append(lines, fmt.Sprintf("extra group %s: %s", k, g))
		}
	}
	sort.Strings(lines)
	if len(lines) > 5 {
		lines = append(lines[:5], fmt.Sprintf("… %d more", len(lines)-5))
	}
	return strings.Join(lines, "; ")
}
