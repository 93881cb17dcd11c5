package producer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kanal-cdc/kanal/internal/cdctest"
	"github.com/kanal-cdc/kanal/internal/testenv"
	"github.com/kanal-cdc/kanal/producer"
)

// TestLeaderHandOver runs two Leaders of one source in this process: one
// captures, the other stands by without capturing; stopping the active one
// hands the source over, and the changes made before and after are all in
// Kafka exactly once.
func TestLeaderHandOver(t *testing.T) {
	m := testenv.MariaDB(t)
	k := testenv.Kafka(t)
	m.Exec(t, "CREATE DATABASE wl")
	m.Exec(t, "CREATE TABLE wl.h (id INT PRIMARY KEY)")
	cfg := cdctest.ProducerConfig(m, k, "lead")
	cfg.HA.SessionTimeout = 6 * time.Second
	type member struct {
		l      *producer.Leader
		cancel context.CancelFunc
		done   chan error
	}
	start := func(name string) *member {
		c := cfg
		c.HA.Instance = name
		p, err := producer.New(c, cdctest.Logger(t).With("instance", name))
		if err != nil {
			t.Fatal(err)
		}
		l, err := producer.NewLeader(p)
		if err != nil {
			t.Fatal(err)
		}
		// A second Leader of the same Producer is refused, not a panic of
		// its metrics' registration.
		if _, err := producer.NewLeader(p); !errors.Is(err, producer.ErrConfig) {
			t.Fatalf("second NewLeader of one Producer: %v, want ErrConfig", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		mb := &member{l: l, cancel: cancel, done: make(chan error, 1)}
		go func() { mb.done <- mb.l.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-mb.done })
		return mb
	}
	waitRoles := func(active, standby *member) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; {
			a, s := active.l.Health(), standby.l.Health()
			if a.Role == producer.RoleActive && a.Ready && s.Role == producer.RoleStandby && s.Ready {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("roles: %+v and %+v", a, s)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	a := start("a")
	for deadline := time.Now().Add(time.Minute); a.l.Role() != producer.RoleActive; {
		if time.Now().After(deadline) {
			t.Fatalf("the only member is not active: %+v", a.l.Health())
		}
		time.Sleep(20 * time.Millisecond)
	}
	b := start("b")
	waitRoles(a, b)
	if b.l.Health().Streaming {
		t.Error("the standby streams the binlog")
	}
	for i := 1; i <= 10; i++ {
		m.Exec(t, fmt.Sprintf("INSERT INTO wl.h VALUES (%d)", i))
	}
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, "lead", nil)

	began := time.Now()
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("the active member stopped with %v", err)
	}
	a.done <- nil
	for deadline := time.Now().Add(time.Minute); !b.l.Health().Ready || b.l.Role() != producer.RoleActive; {
		if time.Now().After(deadline) {
			t.Fatalf("the standby did not take over: %+v", b.l.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("hand-over after a clean stop: %v", time.Since(began).Round(time.Millisecond))
	for i := 11; i <= 20; i++ {
		m.Exec(t, fmt.Sprintf("INSERT INTO wl.h VALUES (%d)", i))
	}
	cdctest.WaitCaughtUp(t, m.DB(), &cfg.Kafka, "lead", nil)
	recs := cdctest.ReadAll(t, k.Brokers, `^kanal\.wl\.h$`, time.Minute)
	if n := cdctest.CheckExactlyOnce(t, recs); n != 20 {
		t.Errorf("%d changes, want 20", n)
	}
}
