package aggregators

import (
	"github.com/kanal-cdc/kanal/schemas"
)

// dialect names a target database's SQL types for the columns kanal creates:
// group columns by the source column's kind, derived groups, and sums.
type dialect struct {
	// Group columns of integer, unsigned, floating-point, bytes and other
	// (text) source columns.
	int, uint, float, bytes, text string
	// decimal(p,s) is the type of a DECIMAL(p,s) group, decimalAny the one of
	// a DECIMAL whose precision is not given.
	decimal, decimalAny string
	// times maps date and time base types to the target's; a fractional-second
	// precision given in the source type is kept. Others are text.
	times map[string]string
	// sumType is the type of a sum of column c (nil: the row count's
	// contributions, a Go Summary's Value).
	sumType func(c *schemas.Column) string
}

var myTypes = dialect{
	int: "BIGINT", uint: "BIGINT UNSIGNED", float: "DOUBLE", bytes: "VARBINARY(255)", text: "VARCHAR(255)",
	decimal: "DECIMAL", decimalAny: "DECIMAL(65,30)",
	times: map[string]string{"date": "DATE", "datetime": "DATETIME", "timestamp": "DATETIME", "time": "TIME"},
	sumType: func(c *schemas.Column) string {
		if c == nil {
			return "DECIMAL(65,10)"
		}
		switch c.Kind() {
		case schemas.KindDecimal:
			_, s := precision(c.Type)
			if s == "" {
				s = "0"
			}
			return "DECIMAL(65," + s + ")"
		case schemas.KindFloat, schemas.KindDouble:
			return "DOUBLE"
		}
		return "DECIMAL(65,0)"
	},
}

var pgTypes = dialect{
	int: "bigint", uint: "numeric(20,0)", float: "double precision", bytes: "bytea", text: "text",
	decimal: "numeric", decimalAny: "numeric",
	times:   map[string]string{"date": "date", "datetime": "timestamp", "timestamp": "timestamptz"},
	sumType: func(*schemas.Column) string { return "numeric" },
}

// groupType is the type of a group column holding the values of source column c.
func (d *dialect) groupType(c schemas.Column) string {
	switch c.Kind() {
	case schemas.KindInt, schemas.KindYear:
		return d.int
	case schemas.KindUint, schemas.KindBit:
		return d.uint
	case schemas.KindDecimal:
		if p, s := precision(c.Type); p != "" {
			if s == "" {
				s = "0"
			}
			return d.decimal + "(" + p + "," + s + ")"
		}
		return d.decimalAny
	case schemas.KindFloat, schemas.KindDouble:
		return d.float
	case schemas.KindBytes:
		return d.bytes
	}
	if t, ok := d.times[schemas.BaseType(c.Type)]; ok {
		if p, _ := precision(c.Type); p != "" {
			return t + "(" + p + ")"
		}
		return t
	}
	return d.text
}

// derivedType is the type of a derived group: year is an integer, hour a
// datetime, day and month dates.
func (d *dialect) derivedType(fn string) string {
	switch fn {
	case "year":
		return d.int
	case "hour":
		return d.times["datetime"]
	}
	return d.times["date"]
}
