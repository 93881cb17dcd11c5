// Package testdiff is how kanal's tests show what differs between what they want
// and what they got: go-cmp's report, shared by every test helper that compares
// table images or summaries. It is test support; the shipped binary does not link
// it.
package testdiff

import (
	"fmt"
	"strings"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// maxLines bounds a report: a sink that lost a whole table would otherwise print
// every row.
const maxLines = 40

// Diff describes how got differs from want, or returns "" when they are equal:
// go-cmp's report (-want +got) with equal entries elided, cut after maxLines
// lines. Nil and empty maps and slices are equal.
func Diff[T any](want, got T) string {
	d := cmp.Diff(want, got, cmpopts.EquateEmpty())
	lines := strings.Split(strings.TrimRight(d, "\n"), "\n")
	if len(lines) <= maxLines {
		return d
	}
	return strings.Join(lines[:maxLines], "\n") + fmt.Sprintf("\n… %d more lines", len(lines)-maxLines)
}

// Rows is Diff of two table images (row key → column → value as text) that
// compares, of a row in both, only the columns the wanted row has: a sink may
// keep columns of its own (a version, a group key) besides the source's.
func Rows(want, got map[string]map[string]string) string {
	projected := make(map[string]map[string]string, len(got))
	for k, g := range got {
		w, ok := want[k]
		if !ok {
			projected[k] = g
			continue
		}
		row := make(map[string]string, len(w))
		for c := range w {
			if v, ok := g[c]; ok {
				row[c] = v
			}
		}
		projected[k] = row
	}
	return Diff(want, projected)
}
