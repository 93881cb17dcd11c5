package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/config"
	"github.com/kanal-cdc/kanal/consumer"
	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testdiff"
	"github.com/kanal-cdc/kanal/internal/testenv"
)

// TestBuiltinAndCustomHandlerFromOneFile runs this program on its committed
// kanal.yaml against a private MariaDB (source and mirror target) and kfake:
// the producer streams a random workload on shop.users, and both handlers of
// the file, the built-in sqlmirror and this program's rowcache (with its
// columns option), must end up equal to the source table.
func TestBuiltinAndCustomHandlerFromOneFile(t *testing.T) {
	if testing.Short() {
		t.Skip("needs MariaDB")
	}
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE shop")
	m.Exec(t, "CREATE TABLE shop.users (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, email VARCHAR(64) NULL, score INT NOT NULL)")
	m.Exec(t, "CREATE DATABASE mirror")
	m.Exec(t, "CREATE TABLE mirror.users (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL, email VARCHAR(64) NULL, score INT NOT NULL, _kanal_version BIGINT NOT NULL)")

	pcfg := cdctest.ProducerConfig(m, k, "shop")
	pcfg.Tables.Include = []string{"shop.*"}
	prod := cdctest.StartProducer(t, pcfg)

	// A random workload: inserts, updates (NULLs included) and deletes; half
	// before the handlers start (their topic must exist: a new table's topic
	// is picked up only at the next metadata refresh), half while they run.
	rng := rand.New(rand.NewPCG(13, 5))
	live := map[int]bool{}
	workload := func(from, to int) {
		for i := from; i < to; i++ {
			id := 1 + rng.IntN(60)
			switch {
			case !live[id]:
				m.Exec(t, "INSERT INTO shop.users VALUES (?, ?, ?, ?)", id, fmt.Sprintf("user %d", id), nullable(rng, fmt.Sprintf("u%d@example.com", id)), rng.IntN(100))
				live[id] = true
			case rng.IntN(4) == 0:
				m.Exec(t, "DELETE FROM shop.users WHERE id = ?", id)
				delete(live, id)
			default:
				m.Exec(t, "UPDATE shop.users SET name = ?, email = ?, score = score + 1 WHERE id = ?", fmt.Sprintf("user %d v%d", id, i), nullable(rng, fmt.Sprintf("n%d@example.com", i)), id)
			}
		}
		prod.CaughtUp(t, m.DB())
	}
	workload(0, 150)

	snapshot := filepath.Join(t.TempDir(), "users.json")
	env := map[string]string{
		"KAFKA_BROKERS": strings.Join(k.Brokers, ","),
		"METRICS_ADDR":  "",
		"MIRROR_DSN":    m.DSN("mirror"),
		"SNAPSHOT":      snapshot,
	}
	lookup := func(name string) (string, bool) { v, ok := env[name]; return v, ok }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stdout, stderr bytes.Buffer
	go func() { done <- run(ctx, "kanal.yaml", lookup, &stdout, &stderr) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("run: %v", err)
			}
		case <-time.After(45 * time.Second):
			t.Error("run did not stop within 45s of its context's end")
		}
	}()

	workload(150, 300)

	key := func(r map[string]string) string { return "shop.users:" + r["id"] }
	var want, mirror, cache map[string]map[string]string
	deadline := time.Now().Add(60 * time.Second)
	for {
		want = cdctest.SourceRows(t, m.DB(), "shop.users", key)
		mirror = cdctest.SourceRows(t, m.DB(), "mirror.users", key)
		for _, r := range mirror {
			delete(r, "_kanal_version")
		}
		cache = readSnapshot(t, snapshot)
		wantCached := map[string]map[string]string{}
		for k, r := range want {
			wantCached[k] = map[string]string{"id": r["id"], "name": r["name"], "email": r["email"]} // options.columns
		}
		dm, dc := testdiff.Rows(want, mirror), testdiff.Rows(wantCached, cache)
		if dm == "" && dc == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s:\nsqlmirror (built in) differs from the source: %s\nrowcache (custom) differs from the source: %s\nlog:\n%s", dm, dc, stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("run stopped: %v\n%s", err, stderr.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if len(want) == 0 {
		t.Fatal("the workload left no rows: nothing was compared")
	}
	for k, r := range cache {
		if len(r) != 3 { // Diff compares the wanted columns only
			t.Fatalf("cached %s has columns %v, want only options.columns [id name email]", k, r)
		}
	}
}

// TestCustomOptionsAreChecked: the custom handler's options come from the
// file and are checked like the built-ins' (unknown keys, required ones).
func TestCustomOptionsAreChecked(t *testing.T) {
	reg, err := factories()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("kanal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(name string) (string, bool) {
		return map[string]string{"MIRROR_DSN": "kanal:pw@tcp(127.0.0.1:3306)/mirror"}[name], name == "MIRROR_DSN"
	}
	f, err := config.Parse(data, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Check(&f.Consumers); err != nil {
		t.Fatalf("the committed kanal.yaml: %v", err)
	}
	for _, tc := range []struct{ options, want string }{
		{"{snapshot: x.json, colums: [id]}", "colums"},
		{"{columns: [id]}", "options.snapshot: required"},
	} {
		doc := strings.Replace(string(data), "snapshot: ${SNAPSHOT:-users-cache.json}\n        columns: [id, name, email]", "", 1)
		doc = strings.Replace(doc, "      options:\n        \n", "      options: "+tc.options+"\n", 1)
		f, err := config.Parse([]byte(doc), lookup)
		if err != nil {
			t.Fatal(err)
		}
		err = reg.Check(&f.Consumers)
		if !errors.Is(err, consumer.ErrConfig) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "handlers[1] (users-cache)") {
			t.Errorf("options %s: got %v, want an error naming handlers[1] (users-cache) and %q", tc.options, err, tc.want)
		}
	}
}

func nullable(rng *rand.Rand, s string) any {
	if rng.IntN(5) == 0 {
		return nil
	}
	return s
}

// readSnapshot reads the rowcache file, rendering values like SourceRows.
func readSnapshot(t *testing.T, path string) map[string]map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var rows map[string]map[string]any
	if err := dec.Decode(&rows); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	out := map[string]map[string]string{}
	for k, r := range rows {
		out[k] = cdctest.RenderRow(r)
	}
	return out
}
