package decimal

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestParseSmallDecimal: the fast path agrees with the general parser (value
// and scale) wherever it accepts an input, and leaves the rest to it.
func TestParseSmallDecimal(t *testing.T) {
	inputs := []string{"0", "-0", "0.00", "-0.00", "12.50", "-12.50", ".5", "5.", "999999999999999999",
		"-999999999999999999", "1000000000000000000", "0.000000000000000001", "1.2.3", "", "-", ".", "+5", "1e3", "12a"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		intDigits, fracDigits := rng.IntN(12), rng.IntN(9)
		s := fmt.Sprintf("%0*d", intDigits, rng.Int64N(1_000_000_000_000))
		if intDigits == 0 {
			s = ""
		}
		if fracDigits > 0 || s == "" {
			s += "." + fmt.Sprintf("%0*d", max(fracDigits, 1), rng.Int64N(100_000_000))[:max(fracDigits, 1)]
		}
		if rng.IntN(2) == 0 {
			s = "-" + s
		}
		inputs = append(inputs, s)
	}
	for _, in := range inputs {
		fast, ok := parseSmall(in)
		if !ok {
			continue
		}
		// The general path, without the fast one in front of it.
		want, err := parseSlow(in)
		if err != nil {
			t.Errorf("%q: fast path accepted what the parser rejects (%v)", in, err)
			continue
		}
		if !fast.Equal(&want) {
			t.Errorf("%q: fast path %s (scale %d), parser %s (scale %d)", in, fast, fast.scale, want, want.scale)
		}
	}
	for _, in := range []string{"+5", "1e3", "1.2.3", "", "-", ".", "1234567890123456789"} {
		if _, ok := parseSmall(in); ok {
			t.Errorf("%q: fast path accepted it", in)
		}
	}
}

// TestDecimalAddSub: sums keep the larger scale and add exactly, also when
// a decimal is added to itself.
func TestDecimalAddSub(t *testing.T) {
	d, _ := Parse("1.5")
	x, _ := Parse("-0.25")
	d.Add(&x)
	if got := d.String(); got != "1.25" {
		t.Fatalf("1.5 + -0.25 = %s", got)
	}
	d.Add(&d)
	if got := d.String(); got != "2.50" {
		t.Fatalf("1.25 + 1.25 = %s", got)
	}
	y, _ := Parse("3")
	y.Sub(&x)
	if got := y.String(); got != "3.25" {
		t.Fatalf("3 - -0.25 = %s", got)
	}
	if got := x.String(); got != "-0.25" {
		t.Fatalf("the subtrahend changed: %s", got)
	}
}

// TestDecimalString: the int64 fast path renders like big.Int's text, for
// every scale and sign, at the edges too.
func TestDecimalString(t *testing.T) {
	cases := map[string]string{"0": "0", "-0.00": "0.00", "0.05": "0.05", "-0.05": "-0.05", "12.50": "12.50",
		"-12.50": "-12.50", "1": "1", "-1": "-1", "0.000000000000000001": "0.000000000000000001",
		"9223372036854775807": "9223372036854775807", "-9223372036854775808": "-9223372036854775808",
		"-922337203685477580.8": "-922337203685477580.8", "9223372036854775808": "9223372036854775808",
		"0.0000000000000000000001": "0.0000000000000000000001", "123456789012345678901234567890.12": "123456789012345678901234567890.12"}
	for in, want := range cases {
		d, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.String(); got != want {
			t.Errorf("%s renders as %s, want %s", in, got, want)
		}
	}
}
