package schemas

import (
	"math"
	"unsafe"
)

// Row images are maps of `any`, and putting an int64, a float64 or a string into
// an `any` makes the runtime allocate a copy of it on the heap: one allocation per
// column value, the largest share of a consumer's allocations per record
// (docs/bench.md, round 7). The fast decoders box these values instead into small
// blocks shared by the records decoded one after the other, as they copy text
// values (Decoder.ownText): about one allocation per block instead of one per
// value, and a value a handler keeps holds on to at most its block.
//
// An interface value is a pair of words, its dynamic type and a pointer to its
// data; the values below are such pairs made by hand, whose data pointer points
// into a block instead of into memory of their own. A block's elements are
// written once, before the value pointing to them is handed out, and never again
// (later values are appended after them, and a full block is replaced, not
// reused), as the runtime's own boxed values are never written after boxing.
// Only types whose interface data is held by pointer (not pointer-shaped types)
// are boxed here; TestBoxes checks each against the runtime's own boxing.

// eface is the layout of an interface value without methods (runtime.eface).
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// typeOf returns the type word of v.
func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

// The type words of the boxed types.
var (
	int64Type   = typeOf(int64(0))
	uint64Type  = typeOf(uint64(0))
	float64Type = typeOf(float64(0))
	stringType  = typeOf("")
	decimalType = typeOf(Decimal(""))
)

// Block sizes: 1 KiB each, the text blocks' size (textBlock).
const (
	wordBlock   = textBlock / 8
	stringBlock = textBlock / 16
)

// boxes are the current blocks of boxed values of a Decoder.
type boxes struct {
	words []uint64 // int64 (two's complement), uint64, float64 (IEEE bits)
	strs  []string // string, Decimal
}

// word returns an interface value of type t whose data is w, in the current
// word block. t must be one of int64Type, uint64Type and float64Type.
func (b *boxes) word(t unsafe.Pointer, w uint64) any {
	if len(b.words) == cap(b.words) {
		b.words = make([]uint64, 0, wordBlock)
	}
	b.words = append(b.words, w)
	return *(*any)(unsafe.Pointer(&eface{typ: t, data: unsafe.Pointer(&b.words[len(b.words)-1])}))
}

// str returns an interface value of type t (stringType or decimalType) holding
// s, whose string header is in the current string block. s itself is not
// copied.
func (b *boxes) str(t unsafe.Pointer, s string) any {
	if len(b.strs) == cap(b.strs) {
		b.strs = make([]string, 0, stringBlock)
	}
	b.strs = append(b.strs, s)
	return *(*any)(unsafe.Pointer(&eface{typ: t, data: unsafe.Pointer(&b.strs[len(b.strs)-1])}))
}

// int64 returns v as an `any` holding an int64.
func (b *boxes) int64(v int64) any {
	if uint64(v) < 256 {
		return v // the runtime boxes these without allocating
	}
	return b.word(int64Type, uint64(v))
}

// uint64 returns v as an `any` holding a uint64.
func (b *boxes) uint64(v uint64) any {
	if v < 256 {
		return v
	}
	return b.word(uint64Type, v)
}

// float64 returns v as an `any` holding a float64.
func (b *boxes) float64(v float64) any { return b.word(float64Type, math.Float64bits(v)) }

// string returns s as an `any` holding a string.
func (b *boxes) string(s string) any {
	if s == "" {
		return s
	}
	return b.str(stringType, s)
}

// decimal returns s as an `any` holding a Decimal.
func (b *boxes) decimal(s Decimal) any {
	if s == "" {
		return s
	}
	return b.str(decimalType, string(s))
}
