package producer

import (
	"bytes"
	"fmt"
	"testing"
)

// Values carved from the arena never overlap, whatever their sizes and estimates.
func TestArenaValuesStayIntact(t *testing.T) {
	var a arena
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
