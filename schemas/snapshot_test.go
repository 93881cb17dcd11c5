package schemas

import (
	"errors"
	"strings"
	"testing"
)

// TestPositionSnapshotCompat: positions written before snapshots existed decode
// with no snapshot state, and a position's snapshot state and a signal survive a
// round trip.
func TestPositionSnapshotCompat(t *testing.T) {
	old := `{"source":"main","flavor":"mariadb","server_id":1,"file":"binlog.000003","pos":8812,"rows_done":0,"gtid_set":"0-1-977","seq":1042,"ts_ms":1,"written_ms":2}`
	p, err := DecodePosition([]byte(old))
	if err != nil || p.Snapshot != nil || p.Seq != 1042 {
		t.Fatalf("old position: %+v, %v", p, err)
	}
	if strings.Contains(string(p.Marshal()), "snapshot") {
		t.Errorf("a position without backfills writes a snapshot field: %s", p.Marshal())
	}
	h := "3432"
	p.Snapshot = &SnapshotState{SignalsOffset: 7, Tables: []Backfill{{ID: "x", Table: "shop.users", State: BackfillRunning, LastKeyRaw: []*string{&h, nil}, Rows: 9, Total: -1}}}
	back, err := DecodePosition(p.Marshal())
	if err != nil || back.Snapshot == nil || back.Snapshot.SignalsOffset != 7 || *back.Snapshot.Tables[0].LastKeyRaw[0] != "3432" || back.Snapshot.Tables[0].LastKeyRaw[1] != nil {
		t.Fatalf("round trip: %+v, %v", back.Snapshot, err)
	}
	c := back.Snapshot.Clone()
	*c.Tables[0].LastKeyRaw[0] = "changed"
	c.Tables[0].Rows = 1
	if back.Snapshot.Tables[0].Rows != 9 {
		t.Error("Clone shares its backfills")
	}
	sig := Signal{ID: "a", Source: "main", Action: SignalSnapshot, Tables: []string{"shop.users"}, Keys: []string{"shop.users:1"}, RequestedMs: 5}
	got, err := DecodeSignal(sig.Marshal())
	if err != nil || got.ID != "a" || got.Keys[0] != "shop.users:1" {
		t.Fatalf("signal round trip: %+v, %v", got, err)
	}
	if _, err := DecodeSignal([]byte("{")); !errors.Is(err, ErrDecode) {
		t.Errorf("bad signal: %v", err)
	}
}
