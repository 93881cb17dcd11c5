package redissink

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/schemas"
)

// TestDecimalText checks that a DECIMAL passed to go-redis as decimalText's string
// is in every way the string the runtime would box: type, ==, reflect, fmt, a type
// switch, after the collector ran.
func TestDecimalText(t *testing.T) {
	texts := []string{"", "0", "-1234.56", "99999999999999999999.000000001", strings.Repeat("7", 65) + ".5"}
	var got []any
	for _, s := range texts {
		got = append(got, decimalText(schemas.Decimal(strings.Clone(s))))
	}
	runtime.GC()
	for i, s := range texts {
		v := got[i]
		if v != any(s) {
			t.Errorf("%q: got %#v, want the string", s, v)
		}
		if reflect.TypeOf(v) != reflect.TypeOf("") || reflect.ValueOf(v).String() != s {
			t.Errorf("%q: reflect sees %v %q", s, reflect.TypeOf(v), reflect.ValueOf(v).String())
		}
		if fmt.Sprint(v) != s {
			t.Errorf("%q: fmt prints %q", s, fmt.Sprint(v))
		}
		switch x := v.(type) {
		case schemas.Decimal:
			t.Errorf("%q: still a Decimal", s)
		case string:
			if x != s {
				t.Errorf("%q: type switch gives %q", s, x)
			}
		default:
			t.Errorf("%q: type switch gives %T", s, v)
		}
		var scratch []byte
		hv, err := hashValue(schemas.Decimal(s), &scratch)
		if err != nil || hv != any(s) {
			t.Errorf("%q: hashValue gives %#v, %v", s, hv, err)
		}
	}
}
