package producer

import (
	"database/sql/driver"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/kanal-cdc/kanal/schemas"
)

// fromText turns one value of a backfill's SELECT — read with the binary protocol
// (exact FLOAT and DOUBLE values; the text protocol rounds them), as the driver's
// bytes (text with character_set_results=binary, temporal values formatted, in
// UTC) or a number printed as database/sql prints it (appendNumber; most
// numbers take fromNumber instead), of the column expression snapColumn.expr —
// into the value the binlog path makes of the same stored value: what go-mysql's
// decoder gives for it, handed to decode (or decodeString/decodeBytes, decode's
// own cases). So a row read by a backfill becomes exactly the values the binlog
// gives for it (TestSnapshotEveryTypeGolden compares the two for every type).
//
// raw must stay unchanged while the value is in use (it is not copied).
func (d *colDecoder) fromText(raw []byte, scratch *[]byte) (schemas.Value, error) {
	if raw == nil {
		return schemas.NullValue(), nil
	}
	text := unsafe.String(unsafe.SliceData(raw), len(raw))
	bad := func(err error) (schemas.Value, error) {
		return schemas.Value{}, fmt.Errorf("unexpected %s value %q: %v", d.typeName(), raw, err)
	}
	var v any
	switch d.realType {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
		// What decode makes of go-mysql's integers, without boxing them (an
		// allocation per value, on the backfill's hot path).
		if d.unsigned {
			u, err := strconv.ParseUint(text, 10, 64)
			if err != nil {
				return bad(err)
			}
			return schemas.UintValue(u), nil
		}
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return bad(err)
		}
		return schemas.IntValue(i), nil
	case mysql.MYSQL_TYPE_YEAR:
		y, err := strconv.Atoi(text)
		if err != nil {
			return bad(err)
		}
		v = y
	case mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_DECIMAL:
		return d.decodeString(text, scratch), nil
	case mysql.MYSQL_TYPE_FLOAT:
		f, err := strconv.ParseFloat(text, 32)
		if err != nil {
			return bad(err)
		}
		v = float32(f)
	case mysql.MYSQL_TYPE_DOUBLE:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return bad(err)
		}
		v = f
	case mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_ENUM, mysql.MYSQL_TYPE_SET:
		// Selected as col+0: the number, the ENUM's index, the SET's bit mask.
		u, err := strconv.ParseUint(text, 10, 64)
		if err != nil {
			return bad(err)
		}
		v = int64(u)
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2:
		// go-mysql gives a time.Time (formatted with the column's fsp) or, for
		// zero and out-of-range dates, the same text the server prints.
		return d.decodeString(text, scratch), nil
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
		if len(text) >= 4 && text[:4] == "0000" {
			v = text // the zero timestamp stays text
			break
		}
		t, err := parseUTCDatetime(text)
		if err != nil {
			return bad(err)
		}
		v = t
	case mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2:
		return d.decodeString(binlogTimeText(text), scratch), nil
	case mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_GEOMETRY, mysql.MYSQL_TYPE_JSON:
		return d.decodeBytes(raw, scratch), nil
	default: // CHAR, VARCHAR, BINARY, VARBINARY
		// decode of a string, called directly: boxing every value into an
		// interface was an allocation per value.
		return d.decodeString(text, scratch), nil
	}
	return d.decode(v, scratch)
}

// fromNumber turns a number the driver read in the binary protocol (int64,
// float32, float64) into what fromText makes of its text, without the text:
// direct is false when the column needs the text (fromText, with the number as
// appendNumber prints it), as for numbers of a type this does not expect.
func (d *colDecoder) fromNumber(x driver.Value, scratch *[]byte) (v schemas.Value, direct bool, err error) {
	switch x := x.(type) {
	case int64:
		switch d.realType {
		case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
			// The driver returns unsigned values as int64 up to MaxInt64 (and
			// BIGINT UNSIGNED above it as text).
			if d.unsigned {
				if x < 0 {
					return v, false, nil
				}
				return schemas.UintValue(uint64(x)), true, nil
			}
			return schemas.IntValue(x), true, nil
		case mysql.MYSQL_TYPE_YEAR:
			v, err = d.decode(int(x), scratch)
			return v, true, err
		case mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_ENUM, mysql.MYSQL_TYPE_SET:
			if x < 0 {
				return v, false, nil
			}
			v, err = d.decode(x, scratch)
			return v, true, err
		}
	case float32:
		if d.realType == mysql.MYSQL_TYPE_FLOAT {
			v, err = d.decode(x, scratch)
			return v, true, err
		}
	case float64:
		if d.realType == mysql.MYSQL_TYPE_DOUBLE {
			v, err = d.decode(x, scratch)
			return v, true, err
		}
	}
	return v, false, nil
}

// binlogTimeText renders a TIME as go-mysql does: the server's text without its
// fraction when the fraction is zero ("12:00:00.000000" → "12:00:00").
func binlogTimeText(text string) string {
	dot := -1
	for i := len(text) - 1; i >= 0; i-- {
		if text[i] == '.' {
			dot = i
			break
		}
	}
	if dot < 0 {
		return text
	}
	for i := dot + 1; i < len(text); i++ {
		if text[i] != '0' {
			return text
		}
	}
	return text[:dot]
}

// parseUTCDatetime parses "2006-01-02 15:04:05[.ffffff]" in UTC.
func parseUTCDatetime(s string) (time.Time, error) {
	layout := "2006-01-02 15:04:05"
	if len(s) > len(layout) {
		layout += "." + "000000"[:len(s)-len(layout)-1]
	}
	return time.ParseInLocation(layout, s, time.UTC)
}
