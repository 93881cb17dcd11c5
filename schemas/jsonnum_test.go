package schemas

import (
	"math/rand"
	"strconv"
	"testing"
)

// TestParseNumbers: parseUint and parseInt give what strconv gives, value and
// error, on integers of every length around the fast path's bounds, signs,
// zeros and what is not an integer at all.
func TestParseNumbers(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	inputs := []string{"", "0", "-0", "00", "-", "+1", "1.5", "1e3", "-1", "255", "4294967295", "4294967296",
		"999999999999999999", "1000000000000000000", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616", "12a", "١٢"}
	for range 5000 {
		s := strconv.FormatUint(r.Uint64()>>r.Intn(64), 10)
		if r.Intn(2) == 0 {
			s = "-" + s
		}
		inputs = append(inputs, s)
	}
	for _, n := range inputs {
		for _, bits := range []int{32, 64} {
			got, gerr := parseUint(n, bits)
			want, werr := strconv.ParseUint(n, 10, bits)
			if got != want || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
				t.Errorf("parseUint(%q, %d) = %d, %v; strconv %d, %v", n, bits, got, gerr, want, werr)
			}
		}
		got, gerr := parseInt(n)
		want, werr := strconv.ParseInt(n, 10, 64)
		if got != want || (gerr == nil) != (werr == nil) || (gerr != nil && gerr.Error() != werr.Error()) {
			t.Errorf("parseInt(%q) = %d, %v; strconv %d, %v", n, got, gerr, want, werr)
		}
	}
}
