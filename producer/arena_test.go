package producer

import (
	"bytes"
	"fmt"
	"testing"
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
