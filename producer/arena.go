package producer

import (
	"bytes"
	"context"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/schemas"
)

// arena hands out copies of byte slices carved from 64 KiB blocks, so a record's key,
// value and header values cost no allocation of their own (and the garbage collector
// sees a few large pointer-free blocks instead of millions of small objects). After a
// commit the Kafka client has released every record (Flush returns once each
// record's promise has run), so release makes every block reusable: in steady state
// the arena allocates nothing.
type arena struct{ b blocks[byte] }

const arenaBlock = 64 << 10

func (a *arena) copy(b []byte) []byte {
	if len(b) > cap(a.b.cur)-len(a.b.cur) {
		if len(b) > arenaBlock/8 {
			c := bytes.Clone(b)
			return c[:len(c):len(c)]
		}
		a.b.grow()
	}
	n := len(a.b.cur)
	a.b.cur = append(a.b.cur, b...)
	return a.b.cur[n:len(a.b.cur):len(a.b.cur)]
}

// reserve returns an empty slice to append one value to, in place at the end of the
// current block when about twice the expected size is free there; pass the result to
// commit. Should the value outgrow the free space, append moves it to its own array:
// still correct, only not carved from the block.
func (a *arena) reserve(expect int) []byte {
	need := 2*expect + 64
	if need > arenaBlock/8 {
		return make([]byte, 0, need)
	}
	if need > cap(a.b.cur)-len(a.b.cur) {
		a.b.grow()
	}
	return a.b.cur[len(a.b.cur):len(a.b.cur)]
}

// commit takes ownership of a value built on reserve's slice.
func (a *arena) commit(v []byte) []byte {
	free := a.b.cur[len(a.b.cur):cap(a.b.cur)]
	if len(v) > 0 && len(free) >= len(v) && &free[0] == &v[0] {
		a.b.cur = a.b.cur[:len(a.b.cur)+len(v)]
	}
	return v[:len(v):len(v)]
}

// blocks hands out elements of fixed-size blocks and takes them all back at once
// (release), when nothing refers to them any more. Blocks beyond maxFree are left to
// the garbage collector, which bounds what an idle producer keeps.
type blocks[T any] struct {
	cur     []T // the block being filled: len is what is handed out
	used    [][]T
	free    [][]T
	size    int
	maxFree int
	// noClear: release leaves the blocks as they are. For the arena's bytes,
	// which hold no pointers and are only ever handed out written (copy,
	// reserve+commit, never take): clearing them was ~3 % of the producer's CPU.
	noClear bool
}

func (b *blocks[T]) grow() {
	if cap(b.cur) > 0 {
		b.used = append(b.used, b.cur)
	}
	if n := len(b.free); n > 0 {
		b.cur, b.free = b.free[n-1][:0], b.free[:n-1]
		return
	}
	size := b.size
	if size <= 0 { // a zero blocks still works
		size = 256
	}
	b.cur = make([]T, 0, size)
}

// take returns n zeroed elements (capacity n).
func (b *blocks[T]) take(n int) []T {
	if cap(b.cur)-len(b.cur) < n {
		b.grow()
	}
	m := len(b.cur)
	b.cur = b.cur[:m+n]
	return b.cur[m : m+n : m+n]
}

// release takes back everything handed out. Blocks are cleared (unless
// noClear), so reused elements start zeroed and released ones keep nothing alive.
func (b *blocks[T]) release() {
	b.recycle(b.used)
	clear(b.used)
	b.used = b.used[:0]
	if !b.noClear {
		clear(b.cur)
	}
	b.cur = b.cur[:0]
}

// seal hands over every block handed out from (the current one too): what is
// taken from here on comes from other blocks. Give them back with recycle once
// nothing refers to them.
func (b *blocks[T]) seal() [][]T {
	if len(b.cur) > 0 {
		b.used = append(b.used, b.cur)
		b.cur = nil
	}
	out := b.used
	b.used = nil
	return out
}

// recycle takes back blocks that seal handed over (or release's own), up to
// maxFree of them; they are cleared unless noClear.
func (b *blocks[T]) recycle(blks [][]T) {
	for _, blk := range blks {
		if len(b.free) < b.maxFree {
			if !b.noClear {
				clear(blk[:cap(blk)])
			}
			b.free = append(b.free, blk[:0])
		}
	}
}

// opHeader holds the kanal.op header values; records share these read-only slices.
var opHeader = map[schemas.Op][]byte{
	schemas.OpCreate: []byte(schemas.OpCreate), schemas.OpUpdate: []byte(schemas.OpUpdate),
	schemas.OpDelete: []byte(schemas.OpDelete), schemas.OpRead: []byte(schemas.OpRead),
}

// recordGen is a generation of records: about genRecords consecutive ones, and
// the blocks their structs, headers and bytes were carved from. The client calls
// each record's promise once it is done with the record (acknowledged or
// failed); once every record of a sealed generation is, its blocks are reused
// at once rather than at the next commit. So what record memory holds is about
// what is in flight, not the whole Kafka transaction (20,000 records by
// default: 12 MiB of arena and 6 MiB of structs on narrow rows, docs/bench.md
// round 6e).
type recordGen struct {
	// Context is the records' Context (never canceled): the promise finds
	// the generation through it.
	context.Context
	produced int64        // records handed out (the session's)
	acked    atomic.Int64 // their promises that have run (the client's goroutines)
	arena    [][]byte
	records  [][]kgo.Record
	headers  [][]kgo.RecordHeader
}

// genRecords is the size of a generation: small enough that an acknowledged
// one is reused soon, large enough that sealing (a handful of slice moves) is
// rare.
const genRecords = 1024

func newRecordGen() *recordGen { return &recordGen{Context: context.Background()} }

// genAcked is called from the promise of every record.
func genAcked(r *kgo.Record) {
	if g, ok := r.Context.(*recordGen); ok {
		g.acked.Add(1)
	}
}

// newRecord returns a zeroed record from a chunk of 256, counted in the current
// generation.
func (s *session) newRecord() *kgo.Record {
	r := &s.records.take(1)[0]
	s.own(r)
	return r
}

// own counts a record that refers to memory of the current generation, so that
// the memory is not reused before the client is done with the record.
func (s *session) own(r *kgo.Record) {
	r.Context = s.gen
	s.gen.produced++
}

// newHeaders returns n zeroed headers (capacity n) from a chunk of 1024.
func (s *session) newHeaders(n int) []kgo.RecordHeader { return s.headers.take(n) }

// nextChange is called before a change's first byte is carved: when the current
// generation is full it is sealed (a change's records and bytes never span two
// generations), and every sealed generation the client is done with is reused.
func (s *session) nextChange() {
	if s.gen.produced < genRecords {
		return
	}
	s.sealGen()
	s.reuseAcked()
}

// sealGen seals the current generation: what is carved from here on belongs to
// a new one. A commit seals it when it starts, so that the records encoded while
// it is in flight (writer.pending) are in generations of their own, which its
// end does not release.
func (s *session) sealGen() {
	g := s.gen
	g.arena, g.records, g.headers = s.arena.b.seal(), s.records.seal(), s.headers.seal()
	s.sealed = append(s.sealed, g)
	s.gen = newRecordGen()
	s.posHdr = nil // carved from the sealed generation's arena
}

// reuseAcked reuses every sealed generation the client is done with.
func (s *session) reuseAcked() {
	kept := s.sealed[:0]
	for _, g := range s.sealed {
		if g.acked.Load() < g.produced {
			kept = append(kept, g)
			continue
		}
		s.recycle(g)
	}
	clear(s.sealed[len(kept):])
	s.sealed = kept
}

func (s *session) recycle(g *recordGen) {
	s.arena.b.recycle(g.arena)
	s.records.recycle(g.records)
	s.headers.recycle(g.headers)
	g.arena, g.records, g.headers = nil, nil, nil
}

// released is called after a commit: the Kafka client holds no record of its
// transaction any more, so the generations sealed when it started are reused.
// The current generation is not: it holds the records encoded while the commit
// was in flight, not produced yet.
func (s *session) released() { s.reuseAcked() }

// initBlocks sizes the reuse of record memory to what one Kafka transaction
// holds (kafka.flush_records and flush_bytes), tombstones included.
func (s *session) initBlocks() {
	k := &s.cfg.Kafka
	s.arena.b = blocks[byte]{size: arenaBlock, maxFree: k.FlushBytes/arenaBlock + 8, noClear: true}
	s.records = blocks[kgo.Record]{size: 256, maxFree: 2*k.FlushRecords/256 + 4}
	s.headers = blocks[kgo.RecordHeader]{size: 1024, maxFree: 8*k.FlushRecords/1024 + 4}
	s.gen = newRecordGen()
}
