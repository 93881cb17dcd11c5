package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressItem is one line of progress: a table being backfilled or verified.
type progressItem struct {
	name  string
	state string // running, queued, done, failed, …
	done  int64
	total int64 // -1: unknown
	rate  float64
	eta   time.Duration
	note  string
}

func (it progressItem) finished() bool {
	return it.state != "running" && it.state != "queued" && it.state != "requested"
}

// line renders the item as one plain line.
func (it progressItem) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s %-9s %d", it.name, it.state, it.done)
	if it.total >= 0 {
		pct := 100.0
		if it.total > 0 {
			pct = min(100, 100*float64(it.done)/float64(it.total))
		}
		fmt.Fprintf(&b, " / ~%d rows (%.0f%%)", it.total, pct)
	} else {
		b.WriteString(" rows")
	}
	if it.rate > 0 {
		fmt.Fprintf(&b, "  %.0f rows/s", it.rate)
	}
	if it.eta > 0 {
		fmt.Fprintf(&b, "  ETA %s", it.eta.Round(time.Second))
	}
	if it.note != "" {
		b.WriteString("  " + it.note)
	}
	return b.String()
}

// progressView shows progress items: bars on a terminal, plain lines otherwise.
type progressView interface {
	update(items []progressItem)
	close()
}

// newProgressView returns bars when w is a terminal, else a view that prints a
// line per item whenever it changed, at most every interval.
func newProgressView(w *os.File, interval time.Duration) progressView {
	if fi, err := w.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return &barView{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(200*time.Millisecond)), bars: map[string]*bar{}}
	}
	return &lineView{w: w, every: interval, last: map[string]string{}}
}

type lineView struct {
	w     io.Writer
	every time.Duration
	at    time.Time
	last  map[string]string
}

func (v *lineView) update(items []progressItem) {
	now := time.Now()
	throttled := now.Sub(v.at) < v.every
	printed := false
	for _, it := range items {
		l := it.line()
		changed := v.last[it.name] != l
		// Finished items and state changes print at once; progress is throttled.
		if !changed || throttled && !it.finished() && v.last[it.name] != "" && strings.Fields(v.last[it.name])[1] == it.state {
			continue
		}
		v.last[it.name] = l
		fmt.Fprintln(v.w, l)
		printed = true
	}
	if printed {
		v.at = now
	}
}

func (v *lineView) close() {}

type bar struct {
	b *mpb.Bar
	// item is read by the bar's decorators in mpb's goroutine.
	item atomic.Pointer[progressItem]
}

type barView struct {
	p    *mpb.Progress
	bars map[string]*bar
}

func (v *barView) update(items []progressItem) {
	// An item can vanish: the initial snapshot's placeholder, once the producer
	// has named its tables.
	seen := map[string]bool{}
	for _, it := range items {
		seen[it.name] = true
	}
	for name, b := range v.bars {
		if !seen[name] {
			b.b.Abort(true)
			delete(v.bars, name)
		}
	}
	for _, it := range items {
		b := v.bars[it.name]
		if b == nil {
			b = &bar{}
			b.item.Store(&it)
			name := it.name
			b.b = v.p.AddBar(max(it.total, 0),
				mpb.PrependDecorators(decor.Name(name, decor.WC{W: len(name) + 1, C: decor.DindentRight}),
					decor.Any(func(decor.Statistics) string { return b.item.Load().state }, decor.WC{W: 10, C: decor.DindentRight})),
				mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return b.item.Load().summary() })),
			)
			v.bars[it.name] = b
		}
		b.item.Store(&it)
		if it.total >= 0 {
			b.b.SetTotal(max(it.total, it.done), false)
		}
		b.b.SetCurrent(it.done)
		if it.finished() && !b.b.Completed() {
			b.b.SetTotal(it.done, true)
		}
	}
}

func (v *barView) close() {
	for _, b := range v.bars {
		if !b.b.Completed() {
			b.b.Abort(false)
		}
	}
	v.p.Wait()
}

// summary is the text after a bar.
func (it progressItem) summary() string {
	s := fmt.Sprintf("%d", it.done)
	if it.total >= 0 {
		s += fmt.Sprintf("/~%d", it.total)
	}
	s += " rows"
	if it.rate > 0 {
		s += fmt.Sprintf(" %.0f/s", it.rate)
	}
	if it.eta > 0 {
		s += " ETA " + it.eta.Round(time.Second).String()
	}
	if it.note != "" {
		s += " " + it.note
	}
	return s
}
