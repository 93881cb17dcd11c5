package filter

import (
	"fmt"
	"strings"
	"time"
)

// Derive computes fn (day, month, year or hour) of a DATE, DATETIME or
// TIMESTAMP value as kanal renders them: day gives the date ("2024-03-05"),
// month its first day ("2024-03-01"), year the year as an int64 and hour the
// start of the hour ("2024-03-05 17:00:00"). NULL and MySQL zero dates give NULL.
func Derive(fn string, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, fmt.Errorf("%s() needs a DATE, DATETIME or TIMESTAMP value, got %T", fn, v)
	}
	t, zero, err := ParseTime(s)
	if err != nil {
		return nil, fmt.Errorf("%s(): %w", fn, err)
	}
	if zero {
		return nil, nil
	}
	switch fn {
	case "day":
		return t.Format("2006-01-02"), nil
	case "month":
		return t.Format("2006-01") + "-01", nil
	case "year":
		return int64(t.Year()), nil
	default: // hour
		return t.Format("2006-01-02 15") + ":00:00", nil
	}
}

// ParseTime reads kanal's DATE, DATETIME and TIMESTAMP renderings; zero is true
// for MySQL zero dates ("0000-00-00", "2024-00-10").
func ParseTime(s string) (t time.Time, zero bool, err error) {
	if strings.HasPrefix(s, "0000-00-00") || strings.Contains(s[min(len(s), 4):min(len(s), 10)], "-00") {
		return t, true, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02", time.RFC3339Nano} {
		if t, err = time.Parse(layout, s); err == nil {
			return t.UTC(), false, nil
		}
	}
	return t, false, fmt.Errorf("%q is not a date or time", s)
}
