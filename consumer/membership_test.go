package consumer

import (
	"strings"
	"testing"
)

// TestAutomaticInstanceIDs: Runners of one host sharing a group get different
// instance ids (one id for two live members would make them fence each other),
// and a Runner started after another one ended — a restart after a crash — gets
// the id that one had, so that it takes its partitions back at once.
func TestAutomaticInstanceIDs(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Kafka.Brokers = []string{"127.0.0.1:1", t.Name()} // a group of this test only
	a, err := resolveMembership(&cfg, "g")
	if err != nil {
		t.Fatal(err)
	}
	b, err := resolveMembership(&cfg, "g")
	if err != nil {
		t.Fatal(err)
	}
	if a.instanceID == "" || a.instanceID == b.instanceID || !strings.HasSuffix(a.instanceID, "-0") || !strings.HasSuffix(b.instanceID, "-1") {
		t.Fatalf("two live members got %q and %q, want <host>-0 and <host>-1", a.instanceID, b.instanceID)
	}
	other, err := resolveMembership(&cfg, "another-group")
	if err != nil {
		t.Fatal(err)
	}
	if other.instanceID != a.instanceID {
		t.Errorf("first member of another group got %q, want %q (ids are per group)", other.instanceID, a.instanceID)
	}
	a.release()
	c, err := resolveMembership(&cfg, "g")
	if err != nil {
		t.Fatal(err)
	}
	if c.instanceID != a.instanceID {
		t.Errorf("restarted member got %q, want the ended member's %q", c.instanceID, a.instanceID)
	}
	for _, m := range []membership{b, c, other} {
		m.release()
	}

	cfg.InstanceID = InstanceNone
	if m, _ := resolveMembership(&cfg, "g"); m.instanceID != "" {
		t.Errorf("instance_id none gave %q, want dynamic membership", m.instanceID)
	}
	cfg.InstanceID = "kanal-consumer-3"
	if m, _ := resolveMembership(&cfg, "g"); m.instanceID != "kanal-consumer-3" {
		t.Errorf("explicit instance_id gave %q", m.instanceID)
	}
	for _, bad := range []string{"", "two words", strings.Repeat("x", 201)} {
		cfg.InstanceID = bad
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "instance_id") {
			t.Errorf("instance_id %q: %v", bad, err)
		}
	}
}
