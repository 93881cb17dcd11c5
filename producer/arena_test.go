package producer

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Values carved from the arena never overlap, whatever their sizes and estimates.
func TestArenaValuesStayIntact(t *testing.T) {
	a := arena{b: blocks[byte]{size: arenaBlock}}
	var got [][]byte
	var want [][]byte
	for i := range 5000 {
		v := bytes.Repeat([]byte{byte(i)}, (i*37)%(arenaBlock/4)+1)
		var out []byte
		switch i % 3 {
		case 0:
			out = a.copy(v)
		case 1: // estimate too small: the value outgrows the reservation
			out = a.commit(append(a.reserve(len(v)/4), v...))
		default:
			out = a.commit(append(a.reserve(len(v)), v...))
		}
		got = append(got, out)
		want = append(want, v)
		if cap(out) != len(out) {
			t.Fatalf("value %d: cap %d > len %d: an append could clobber its neighbour", i, cap(out), len(out))
		}
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatal(fmt.Sprintf("value %d changed after later values were carved", i))
		}
	}
}

// After release every block is reused and every element handed out again starts
// zeroed, up to maxFree blocks.
func TestBlocksReuse(t *testing.T) {
	type rec struct {
		key []byte
		n   int
	}
	b := blocks[rec]{size: 4, maxFree: 2}
	var first []*rec
	for i := range 10 {
		r := &b.take(1)[0]
		r.key, r.n = []byte("k"), i+1
		first = append(first, r)
	}
	if len(b.used) != 2 || len(b.free) != 0 {
		t.Fatalf("after 10 of size 4: %d used, %d free blocks", len(b.used), len(b.free))
	}
	b.release()
	if len(b.used) != 0 || len(b.free) != 2 {
		t.Fatalf("after release: %d used, %d free blocks, want 0 and 2", len(b.used), len(b.free))
	}
	for i, r := range first {
		if r.key != nil || r.n != 0 {
			t.Fatalf("element %d not cleared on release: %+v", i, *r)
		}
	}
	seen := map[*rec]bool{}
	for _, r := range first {
		seen[r] = true
	}
	reused := 0
	for range 12 {
		r := &b.take(1)[0]
		if r.key != nil || r.n != 0 {
			t.Fatalf("taken element not zeroed: %+v", *r)
		}
		if seen[r] {
			reused++
		}
	}
	// The current block (two of its four elements were handed out before) and
	// both free ones are reused: 2 + 4 + 4 elements seen before.
	if reused != 10 {
		t.Errorf("%d of 12 elements came from released blocks, want 10", reused)
	}
	h := b.take(3)
	if len(h) != 3 || cap(h) != 3 {
		t.Errorf("take(3): len %d cap %d", len(h), cap(h))
	}
}

// A sealed generation's memory is reused only once every one of its records
// has been acknowledged (its promise ran), never before; the current
// generation's never before the commit.
func TestGenerationsReusedWhenAcked(t *testing.T) {
	s := &session{cfg: &Config{Kafka: DefaultConfig().Kafka}}
	s.initBlocks()
	type carved struct {
		rec *kgo.Record
		val []byte
	}
	fill := func(n int) []carved {
		var out []carved
		for i := range n {
			s.nextChange()
			r := s.newRecord()
			v := s.arena.copy(bytes.Repeat([]byte{byte(i)}, 100))
			r.Value = v
			out = append(out, carved{r, v})
		}
		return out
	}
	first := fill(genRecords) // the first generation, full
	second := fill(1)         // seals the first
	if len(s.sealed) != 1 {
		t.Fatalf("%d sealed generations after %d records, want 1", len(s.sealed), genRecords+1)
	}
	for _, c := range first[:genRecords-1] {
		genAcked(c.rec)
	}
	fill(genRecords) // seals the second; the first still has a record in flight
	if len(s.sealed) != 2 {
		t.Fatalf("%d sealed generations, want 2 (the first is not fully acknowledged)", len(s.sealed))
	}
	for i, c := range first {
		if c.val[0] != byte(i) || c.rec.Value == nil {
			t.Fatalf("record %d of a generation in flight was reused", i)
		}
	}
	genAcked(first[genRecords-1].rec)
	free := len(s.arena.b.free)
	fill(genRecords) // seals the third, reuses the first
	if len(s.sealed) != 2 {
		t.Fatalf("%d sealed generations, want 2 (the first was acknowledged)", len(s.sealed))
	}
	if len(s.arena.b.free)+1 < free { // a new block was taken from the reused ones
		t.Fatalf("arena free blocks %d → %d: the first generation's blocks were not reused", free, len(s.arena.b.free))
	}
	if second[0].val[0] != 0 || second[0].rec.Value == nil {
		t.Fatal("a record of an unacknowledged generation was reused")
	}
	// A commit seals the current generation when it starts; the records
	// encoded while it is in flight (pending, not produced yet) are in the next
	// one, which the commit's end must not release.
	s.sealGen()
	pending := fill(1)
	for _, g := range s.sealed {
		g.acked.Store(g.produced) // the commit's flush waited for every record
	}
	s.released()
	if len(s.sealed) != 0 || s.gen.produced != 1 {
		t.Fatalf("after the commit: %d sealed, %d in the current generation, want 0 and 1", len(s.sealed), s.gen.produced)
	}
	fill(10)
	if pending[0].val[0] != 0 || pending[0].rec.Value == nil {
		t.Fatal("a record pending behind the commit was reused")
	}
}
