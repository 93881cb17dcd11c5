package sqlmirror

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kanal-cdc/kanal/schemas"
)

// ValueError says a value cannot be written to the target. Handle returns it
// marked consumer.Permanent, so the record is dead-lettered, never dropped.
type ValueError struct {
	Table  string // source table, "db.table"
	Column string // source column
	Type   string // source column type
	Value  string // the value, shortened
	Reason string
}

// Error says what cannot be written where, naming table, column and value.
func (e *ValueError) Error() string {
	return fmt.Sprintf("sqlmirror: table %s, column %s (%s), value %s: %s", e.Table, e.Column, e.Type, e.Value, e.Reason)
}

// errCannotHold is returned by convert; the caller wraps it in a ValueError.
type errCannotHold string

func (e errCannotHold) Error() string { return string(e) }

func cannot(format string, args ...any) error { return errCannotHold(fmt.Sprintf(format, args...)) }

// showValue renders a value for an error message, at most 64 characters.
func showValue(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		s = fmt.Sprintf("0x%x", x)
	case string:
		s = fmt.Sprintf("%q", x)
	default:
		s = fmt.Sprint(x)
	}
	if len(s) > 64 {
		s = s[:61] + "..."
	}
	return s
}

func isZeroDate(s string) bool {
	return strings.HasPrefix(s, "0000-") || strings.Contains(s, "-00")
}

// ---- Postgres ----

func (pgDialect) convert(typ string, v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, []byte:
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			// As text: a numeric(20,0) column holds it, a bigint refuses it.
			return fmt.Sprint(x), nil
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case schemas.Decimal:
		return string(x), nil
	case string:
		switch schemas.BaseType(typ) {
		case "date", "datetime", "timestamp":
			if isZeroDate(x) {
				return nil, cannot("PostgreSQL has no zero date")
			}
			return x, nil
		case "time":
			return x, nil
		}
		if strings.IndexByte(x, 0) >= 0 {
			return nil, cannot("PostgreSQL text cannot hold NUL characters")
		}
		if !utf8.ValidString(x) {
			return nil, cannot("PostgreSQL text must be valid UTF-8")
		}
		return x, nil
	}
	return nil, cannot("unsupported value type %T", v)
}

// ---- MySQL ----

func (mysqlDialect) convert(typ string, v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, uint64, float64, []byte:
		return x, nil
	case float32:
		return float64(x), nil
	case schemas.Decimal:
		return string(x), nil
	case string:
		if schemas.BaseType(typ) == "timestamp" && !isZeroDate(x) {
			// The mirror's sessions run with time_zone '+00:00'.
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, cannot("not an RFC 3339 timestamp: %v", err)
			}
			return t.UTC().Format("2006-01-02 15:04:05.999999"), nil
		}
		return x, nil
	}
	return nil, cannot("unsupported value type %T", v)
}

// ---- Phoenix ----

// maxPhoenixDigits is the largest DECIMAL precision Phoenix accepts.
const maxPhoenixDigits = 38

func (d phoenixDialect) convert(typ string, v any) (any, error) {
	switch x := v.(type) {
	case nil, int64, float64, []byte:
		return x, nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, cannot("Phoenix BIGINT and UNSIGNED_LONG hold at most 9223372036854775807")
		}
		return int64(x), nil
	case float32:
		return float64(x), nil
	case schemas.Decimal:
		digits := 0
		for _, c := range string(x) {
			if c >= '0' && c <= '9' {
				digits++
			}
		}
		if digits > maxPhoenixDigits {
			return nil, cannot("Phoenix DECIMAL holds at most %d digits", maxPhoenixDigits)
		}
		return string(x), nil
	case string:
		switch schemas.BaseType(typ) {
		case "date", "datetime", "timestamp":
			if isZeroDate(x) {
				return nil, cannot("Phoenix has no zero date")
			}
			return d.parseTime(x)
		case "time":
			t, err := time.Parse("15:04:05.999999", x)
			if err != nil {
				return nil, cannot("Phoenix TIME holds times of day 00:00:00-23:59:59 only")
			}
			return d.checkMillis(time.Date(1970, 1, 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC))
		}
		if !utf8.ValidString(x) {
			return nil, cannot("Phoenix VARCHAR must be valid UTF-8")
		}
		return x, nil
	}
	return nil, cannot("unsupported value type %T", v)
}

func (d phoenixDialect) parseTime(s string) (any, error) {
	var t time.Time
	var err error
	switch {
	case strings.Contains(s, "T"):
		t, err = time.Parse(time.RFC3339Nano, s)
	case len(s) == len("2006-01-02"):
		t, err = time.Parse("2006-01-02", s)
	default:
		t, err = time.Parse("2006-01-02 15:04:05.999999", s)
	}
	if err != nil {
		return nil, cannot("unparsable time: %v", err)
	}
	return d.checkMillis(t.UTC())
}

var errSubMillis = errors.New("Avatica carries milliseconds: the sub-millisecond digits would be lost (set truncate_to_millis to allow)")

func (d phoenixDialect) checkMillis(t time.Time) (any, error) {
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		if !d.truncate {
			return nil, errCannotHold(errSubMillis.Error())
		}
		t = t.Truncate(time.Millisecond)
	}
	return t, nil
}
