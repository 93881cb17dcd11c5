package schemas

import (
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"runtime"
	"strconv"
	"testing"
)

// TestBoxes: a value boxed in a block is the value the runtime boxes, for every
// boxed type: same type, equal under ==, the same to reflect, fmt and a type
// switch, and still so after many more values filled and replaced blocks and
// the collector ran (only the blocks' values keep them alive).
func TestBoxes(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	var b boxes
	type pair struct{ got, want any }
	var all []pair
	for i := range 20 * wordBlock {
		n := r.Int63() >> r.Intn(63)
		s := strconv.Itoa(i) + "-" + strconv.FormatInt(n, 36)
		f := math.Float64frombits(r.Uint64())
		if i%7 == 0 {
			f = []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), 1.5}[i%5]
		}
		all = append(all,
			pair{b.int64(n), n}, pair{b.int64(-n), -n},
			pair{b.uint64(uint64(n) << 1), uint64(n) << 1},
			pair{b.float64(f), f},
			pair{b.string(s), s}, pair{b.string(""), ""},
			pair{b.decimal(Decimal(s)), Decimal(s)}, pair{b.decimal(""), Decimal("")})
	}
	runtime.GC()
	runtime.GC()
	for i, p := range all {
		if reflect.TypeOf(p.got) != reflect.TypeOf(p.want) {
			t.Fatalf("%d: type %T, want %T", i, p.got, p.want)
		}
		if f, ok := p.want.(float64); ok && math.IsNaN(f) {
			if g := p.got.(float64); !math.IsNaN(g) {
				t.Fatalf("%d: %v, want NaN", i, g)
			}
			continue
		}
		if p.got != p.want || !reflect.DeepEqual(p.got, p.want) {
			t.Fatalf("%d: %#v, want %#v", i, p.got, p.want)
		}
		if g, w := fmt.Sprintf("%#v", p.got), fmt.Sprintf("%#v", p.want); g != w {
			t.Fatalf("%d: %s, want %s", i, g, w)
		}
		switch v := p.got.(type) {
		case int64:
			if v != p.want.(int64) {
				t.Fatalf("%d: %d", i, v)
			}
		case uint64:
			if v != p.want.(uint64) {
				t.Fatalf("%d: %d", i, v)
			}
		case float64:
			if math.Float64bits(v) != math.Float64bits(p.want.(float64)) {
				t.Fatalf("%d: %v", i, v)
			}
		case string:
			if v != p.want.(string) {
				t.Fatalf("%d: %q", i, v)
			}
		case Decimal:
			if v != p.want.(Decimal) {
				t.Fatalf("%d: %q", i, v)
			}
		default:
			t.Fatalf("%d: type %T", i, v)
		}
	}
}

// TestBoxAllocations: boxing costs about one allocation per block, not one
// per value.
func TestBoxAllocations(t *testing.T) {
	var b boxes
	var sink any
	n := testing.AllocsPerRun(10, func() {
		for i := range wordBlock {
			sink = b.int64(int64(i) + 1000)
			sink = b.string("value")
		}
	})
	_ = sink
	// wordBlock ints fill one word block and two string blocks.
	if n > 3 {
		t.Errorf("%v allocations for %d values", n, 2*wordBlock)
	}
}
