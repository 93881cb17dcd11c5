package redissink

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
)

// Ring is a consistent-hash ring over named instances: each instance owns the arcs
// ending at its vnodes points, so adding or removing an instance moves only the keys
// of the arcs it gains or loses (about 1/n of them).
//
// The algorithm is small enough to reimplement in any language:
//
//	h(s)          = mix64(FNV-1a-64(s))
//	mix64(x)      = the SplitMix64 finalizer: x ^= x>>30; x *= 0xbf58476d1ce4e5b9;
//	                x ^= x>>27; x *= 0x94d049bb133111eb; x ^= x>>31
//	points        = h(name + "#" + i) for every instance name and i in 0..vnodes-1
//	Locate(key)   = the instance of the first point >= h(key), wrapping around;
//	                equal points are ordered by instance name
//
// A Ring is immutable and safe for concurrent use.
type Ring struct {
	points []ringPoint
	names  []string
}

type ringPoint struct {
	hash uint64
	name string
}

// NewRing builds a ring over the given instance names with vnodes points each.
func NewRing(names []string, vnodes int) (*Ring, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: ring: no instances", ErrConfig)
	}
	if vnodes < 1 {
		return nil, fmt.Errorf("%w: ring: vnodes must be >= 1", ErrConfig)
	}
	r := &Ring{names: slices.Clone(names)}
	sort.Strings(r.names)
	for i := 1; i < len(r.names); i++ {
		if r.names[i] == r.names[i-1] {
			return nil, fmt.Errorf("%w: ring: instance %q listed twice", ErrConfig, r.names[i])
		}
	}
	r.points = make([]ringPoint, 0, len(names)*vnodes)
	for _, n := range r.names {
		for i := 0; i < vnodes; i++ {
			r.points = append(r.points, ringPoint{hash: ringHash(n + "#" + strconv.Itoa(i)), name: n})
		}
	}
	sort.Slice(r.points, func(i, j int) bool {
		a, b := r.points[i], r.points[j]
		return a.hash < b.hash || a.hash == b.hash && a.name < b.name
	})
	return r, nil
}

// Names returns the ring's instance names, sorted.
func (r *Ring) Names() []string { return slices.Clone(r.names) }

// Locate returns the name of the instance that owns key.
func (r *Ring) Locate(key string) string {
	if len(r.names) == 1 {
		return r.names[0]
	}
	h := ringHash(key)
	i := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= h })
	if i == len(r.points) {
		i = 0
	}
	return r.points[i].name
}

// ringHash is FNV-1a 64 followed by SplitMix64's finalizer: FNV alone clusters
// similar short strings ("a#1", "a#2"), the finalizer spreads them over the ring.
func ringHash(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
