// Package decimal is the exact decimal arithmetic of summary sums, and the
// numbers of the filter language.
package decimal

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/kanal-cdc/kanal/schemas"
)

// Decimal is an exact decimal number: unscaled × 10^-Scale. The zero value is 0.
// Sums are kept as decimals so that DECIMAL columns add up exactly; the scale of a
// sum is the largest scale of its terms, as in SQL.
type Decimal struct {
	unscaled big.Int
	scale    int32
}

// maxScale bounds the digits after the point a Decimal may carry (MySQL allows 30,
// Postgres 16383); more is almost certainly a bug in a value function.
const maxScale = 1000

// Parse parses decimal text: an optional sign, digits with an optional
// point, and an optional exponent ("12.50", "-0.001", "1e3").
func Parse(s string) (Decimal, error) {
	if d, ok := parseSmall(s); ok {
		return d, nil
	}
	return parseSlow(s)
}

// parseSlow is Parse for any input it accepts.
func parseSlow(s string) (Decimal, error) {
	var d Decimal
	orig := s
	if s == "" {
		return d, fmt.Errorf("empty decimal")
	}
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e > maxScale || e < -maxScale {
			return d, fmt.Errorf("bad decimal %q", orig)
		}
		exp = e
		s = s[:i]
	}
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	intPart, frac, hasPoint := strings.Cut(s, ".")
	if intPart == "" && frac == "" || hasPoint && strings.Contains(frac, ".") {
		return d, fmt.Errorf("bad decimal %q", orig)
	}
	digits := intPart + frac
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return d, fmt.Errorf("bad decimal %q", orig)
		}
	}
	if _, ok := d.unscaled.SetString(digits, 10); !ok {
		return d, fmt.Errorf("bad decimal %q", orig)
	}
	scale := len(frac) - exp
	if scale < 0 {
		d.unscaled.Mul(&d.unscaled, pow10(-scale))
		scale = 0
	}
	if scale > maxScale {
		return d, fmt.Errorf("decimal %q has more than %d digits after the point", orig, maxScale)
	}
	d.scale = int32(scale)
	if neg {
		d.unscaled.Neg(&d.unscaled)
	}
	return d, nil
}

// parseSmall parses the common case without going through big.Int's
// text scanner: an optional '-', at most 18 digits with at most one point, no
// exponent. ok is false for anything else (Parse then handles it).
func parseSmall(s string) (d Decimal, ok bool) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if len(s) == 0 || len(s) > 19 {
		return d, false
	}
	var v uint64
	digits, scale, point := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			v = v*10 + uint64(c-'0')
			digits++
			if point {
				scale++
			}
		case c == '.' && !point:
			point = true
		default:
			return d, false
		}
	}
	if digits == 0 || digits > 18 {
		return d, false
	}
	d.unscaled.SetUint64(v)
	if neg {
		d.unscaled.Neg(&d.unscaled)
	}
	d.scale = int32(scale)
	return d, true
}

// Of converts a change value to a Decimal: int64, uint64, schemas.Decimal,
// float32/float64 (their shortest decimal form), decimal text, or another
// Decimal. ok is false for nil (SQL NULL).
func Of(v any) (d Decimal, ok bool, err error) {
	switch x := v.(type) {
	case nil:
		return d, false, nil
	case Decimal:
		d.unscaled.Set(&x.unscaled)
		d.scale = x.scale
		return d, true, nil
	case int64:
		d.unscaled.SetInt64(x)
	case int:
		d.unscaled.SetInt64(int64(x))
	case int32:
		d.unscaled.SetInt64(int64(x))
	case uint64:
		d.unscaled.SetUint64(x)
	case uint32:
		d.unscaled.SetUint64(uint64(x))
	case schemas.Decimal:
		d, err = Parse(string(x))
	case string:
		d, err = Parse(x)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return d, false, fmt.Errorf("cannot sum %v", x)
		}
		d, err = Parse(strconv.FormatFloat(x, 'f', -1, 64))
	case float32:
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return d, false, fmt.Errorf("cannot sum %v", x)
		}
		d, err = Parse(strconv.FormatFloat(float64(x), 'f', -1, 32))
	default:
		return d, false, fmt.Errorf("cannot sum a %T", v)
	}
	if err != nil {
		return Decimal{}, false, err
	}
	return d, true, nil
}

// FromInt64 returns v as a Decimal of scale 0.
func FromInt64(v int64) Decimal {
	var d Decimal
	d.unscaled.SetInt64(v)
	return d
}

// pow10Small holds 10^0 … 10^39; never modified after package initialisation.
var pow10Small = func() [40]*big.Int {
	var t [40]*big.Int
	for i := range t {
		t[i] = new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(i)), nil)
	}
	return t
}()

// pow10 returns 10^n; callers must not modify the result.
func pow10(n int) *big.Int {
	if n < len(pow10Small) {
		return pow10Small[n]
	}
	return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil)
}

// rescaled returns d's unscaled value at scale s (s >= d.scale).
func (d *Decimal) rescaled(s int32) *big.Int {
	if s == d.scale {
		return &d.unscaled
	}
	return new(big.Int).Mul(&d.unscaled, pow10(int(s-d.scale)))
}

// Add sets d to d + x.
func (d *Decimal) Add(x *Decimal) { d.addSign(x, false) }

// Sub sets d to d - x.
func (d *Decimal) Sub(x *Decimal) { d.addSign(x, true) }

func (d *Decimal) addSign(x *Decimal, neg bool) {
	s := max(d.scale, x.scale)
	if d.scale < s {
		d.unscaled.Mul(&d.unscaled, pow10(int(s-d.scale)))
		d.scale = s
	}
	b := x.rescaled(s) // x itself when the scales agree, which is the rule
	if neg {
		d.unscaled.Sub(&d.unscaled, b)
	} else {
		d.unscaled.Add(&d.unscaled, b)
	}
}

// IsZero reports whether d is 0 (at any scale).
func (d *Decimal) IsZero() bool { return d.unscaled.Sign() == 0 }

// Equal reports whether d and x have the same value and scale.
func (d *Decimal) Equal(x *Decimal) bool {
	return d.scale == x.scale && d.unscaled.Cmp(&x.unscaled) == 0
}

// Scale returns the number of digits after the point.
func (d *Decimal) Scale() int32 { return d.scale }

// Rat returns d as a rational number.
func (d *Decimal) Rat() *big.Rat {
	r := new(big.Rat).SetInt(&d.unscaled)
	if d.scale > 0 {
		r.Quo(r, new(big.Rat).SetInt(pow10(int(d.scale))))
	}
	return r
}

// String renders d with exactly Scale digits after the point ("-0.50").
func (d Decimal) String() string {
	if d.unscaled.IsInt64() && d.scale < 19 {
		// Without big.Int's conversion: one allocation, for the result.
		var buf [48]byte
		v := d.unscaled.Int64()
		b := buf[:0]
		if v < 0 {
			b = append(b, '-')
		}
		digits := strconv.AppendUint(buf[24:24], absInt64(v), 10)
		sc := int(d.scale)
		if sc > 0 {
			if len(digits) <= sc {
				b = append(b, '0')
				b = append(b, '.')
				for range sc - len(digits) {
					b = append(b, '0')
				}
				b = append(b, digits...)
			} else {
				b = append(b, digits[:len(digits)-sc]...)
				b = append(b, '.')
				b = append(b, digits[len(digits)-sc:]...)
			}
		} else {
			b = append(b, digits...)
		}
		return string(b)
	}
	s := d.unscaled.String()
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	if d.scale > 0 {
		sc := int(d.scale)
		if len(s) <= sc {
			s = strings.Repeat("0", sc-len(s)+1) + s
		}
		s = s[:len(s)-sc] + "." + s[len(s)-sc:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// absInt64 is |v| as a uint64 (also for math.MinInt64).
func absInt64(v int64) uint64 {
	if v < 0 {
		return uint64(-(v + 1)) + 1
	}
	return uint64(v)
}
