package schemas

import "strconv"

// Number tokens of the fast decoders are mostly short integers (ids, counts,
// positions, sequences): parseUint and parseInt convert those of up to 18 digits
// in one loop, as strconv would (which they call for anything else, so its
// answer, and error, stays the reference). Their callers have checked the token
// against JSON's number grammar (jsonScan.num).

// maxFastDigits is the most digits whose value cannot overflow a uint64 (or,
// with a sign, an int64).
const maxFastDigits = 18

// fastDigits returns the value of n when it is 1 to maxFastDigits decimal
// digits.
func fastDigits(n string) (uint64, bool) {
	if len(n) == 0 || len(n) > maxFastDigits {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(n); i++ {
		c := n[i] - '0'
		if c > 9 {
			return 0, false
		}
		v = v*10 + uint64(c)
	}
	return v, true
}

// parseUint is strconv.ParseUint(n, 10, bits).
func parseUint(n string, bits int) (uint64, error) {
	if v, ok := fastDigits(n); ok && (bits == 64 || v>>bits == 0) {
		return v, nil
	}
	return strconv.ParseUint(n, 10, bits)
}

// parseInt is strconv.ParseInt(n, 10, 64).
func parseInt(n string) (int64, error) {
	neg := len(n) > 0 && n[0] == '-'
	digits := n
	if neg {
		digits = n[1:]
	}
	if v, ok := fastDigits(digits); ok {
		if neg {
			return -int64(v), nil
		}
		return int64(v), nil
	}
	return strconv.ParseInt(n, 10, 64)
}
