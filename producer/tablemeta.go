package producer

import (
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// tableMetaCache decodes the optional metadata of table maps (column names,
// primary key, signedness, charsets, ENUM/SET labels: what
// binlog_row_metadata=FULL adds) once per distinct byte string instead of once
// per event. Every binlog transaction repeats the table maps of the tables it
// touches, so a source of single-row transactions sends the same bytes
// thousands of times a second; go-mysql decoded them each time, about ten
// allocations and a sixth of its parsing work.
//
// go-mysql calls decode (its TableMapOptionalMetaDecodeFunc) from inside
// TableMapEvent.Decode, which cannot hand the result over; fill, called with the
// event right after in the same goroutine (the stream's HandleEvent), sets the
// fields. Events share the decoded slices: they are read-only.
type tableMetaCache struct {
	entries map[string]*tableMeta
	// pending holds what decode found, in order, until fill takes it: one
	// entry between a table map's parsing and its handling, or those of all the
	// table maps of a MySQL 8 compressed transaction payload, which go-mysql
	// parses all at once.
	pending []*tableMeta
	next    int // index of the entry fill takes next
}

// tableMeta is one decoded optional-metadata block: the fields of
// replication.TableMapEvent it sets, as go-mysql's own decoder sets them.
type tableMeta struct {
	signedness, visibility                      []byte
	defaultCharset, columnCharset, geometryType []uint64
	enumSetDefaultCharset, enumSetColumnCharset []uint64
	columnName                                  [][]byte
	setStr, enumStr                             [][][]byte
	pk, pkPrefix                                []uint64
}

func newTableMetaCache() *tableMetaCache {
	return &tableMetaCache{entries: map[string]*tableMeta{}}
}

var errTableMetaOrder = errors.New("table map without its optional metadata")

// decode is the syncer's TableMapOptionalMetaDecodeFunc.
func (c *tableMetaCache) decode(data []byte) error {
	if m, ok := c.entries[string(data)]; ok {
		c.pending = append(c.pending, m)
		return nil
	}
	// The entry owns a copy: decoded slices point into it, not into the event.
	key := string(data)
	b := []byte(key)
	m, err := parseTableMeta(b[:len(b):len(b)])
	if err != nil {
		return err
	}
	if len(c.entries) >= maxCachedTables {
		clear(c.entries)
	}
	c.entries[key] = m
	c.pending = append(c.pending, m)
	return nil
}

// fill sets tm's optional metadata from what decode found for it.
func (c *tableMetaCache) fill(tm *replication.TableMapEvent) error {
	if c.next >= len(c.pending) {
		return fmt.Errorf("%w: %s.%s", errTableMetaOrder, tm.Schema, tm.Table)
	}
	m := c.pending[c.next]
	c.pending[c.next] = nil
	c.next++
	if c.next == len(c.pending) {
		// Emptied (always, between two events of a plain stream): reuse the
		// array, one table map a transaction must not cost an allocation.
		c.pending, c.next = c.pending[:0], 0
	}
	if m.columnName != nil && len(m.columnName) != int(tm.ColumnCount) {
		return fmt.Errorf("table map of %s.%s: %d column names for %d columns", tm.Schema, tm.Table, len(m.columnName), tm.ColumnCount)
	}
	tm.SignednessBitmap, tm.VisibilityBitmap = m.signedness, m.visibility
	tm.DefaultCharset, tm.ColumnCharset, tm.GeometryType = m.defaultCharset, m.columnCharset, m.geometryType
	tm.EnumSetDefaultCharset, tm.EnumSetColumnCharset = m.enumSetDefaultCharset, m.enumSetColumnCharset
	tm.ColumnName = m.columnName
	tm.SetStrValue, tm.EnumStrValue = m.setStr, m.enumStr
	tm.PrimaryKey, tm.PrimaryKeyPrefix = m.pk, m.pkPrefix
	return nil
}

// parseTableMeta reads the type-length-value fields of a table map's optional
// metadata (MySQL's Table_map_log_event::Optional_metadata_field_type).
func parseTableMeta(data []byte) (m *tableMeta, err error) {
	defer func() {
		// Lengths come from the server; a malformed block must be an error,
		// not a crash of the producer.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("malformed table map metadata: %v", r)
		}
	}()
	m = &tableMeta{}
	for pos := 0; pos < len(data); {
		t := data[pos]
		pos++
		l, _, n := mysql.LengthEncodedInt(data[pos:])
		pos += n
		if n == 0 || l > uint64(len(data)-pos) {
			return nil, fmt.Errorf("malformed table map metadata: field %d of %d bytes in %d", t, l, len(data)-pos)
		}
		v := data[pos : pos+int(l)]
		pos += int(l)
		switch t {
		case replication.TABLE_MAP_OPT_META_SIGNEDNESS:
			m.signedness = v
		case replication.TABLE_MAP_OPT_META_DEFAULT_CHARSET:
			if m.defaultCharset, err = charsetSeq(v); err != nil {
				return nil, err
			}
		case replication.TABLE_MAP_OPT_META_COLUMN_CHARSET:
			m.columnCharset = intSeq(v)
		case replication.TABLE_MAP_OPT_META_COLUMN_NAME:
			m.columnName = [][]byte{}
			for p := 0; p < len(v); {
				n := int(v[p])
				if p+1+n > len(v) {
					return nil, fmt.Errorf("malformed table map metadata: column name %d", len(m.columnName))
				}
				m.columnName = append(m.columnName, v[p+1:p+1+n])
				p += 1 + n
			}
		case replication.TABLE_MAP_OPT_META_SET_STR_VALUE:
			if m.setStr, err = strValues(v); err != nil {
				return nil, err
			}
		case replication.TABLE_MAP_OPT_META_ENUM_STR_VALUE:
			if m.enumStr, err = strValues(v); err != nil {
				return nil, err
			}
		case replication.TABLE_MAP_OPT_META_GEOMETRY_TYPE:
			m.geometryType = intSeq(v)
		case replication.TABLE_MAP_OPT_META_SIMPLE_PRIMARY_KEY:
			for _, i := range intSeq(v) {
				m.pk = append(m.pk, i)
				m.pkPrefix = append(m.pkPrefix, 0)
			}
		case replication.TABLE_MAP_OPT_META_PRIMARY_KEY_WITH_PREFIX:
			seq := intSeq(v)
			for i := 0; i+1 < len(seq); i += 2 {
				m.pk = append(m.pk, seq[i])
				m.pkPrefix = append(m.pkPrefix, seq[i+1])
			}
		case replication.TABLE_MAP_OPT_META_ENUM_AND_SET_DEFAULT_CHARSET:
			if m.enumSetDefaultCharset, err = charsetSeq(v); err != nil {
				return nil, err
			}
		case replication.TABLE_MAP_OPT_META_ENUM_AND_SET_COLUMN_CHARSET:
			m.enumSetColumnCharset = intSeq(v)
		case replication.TABLE_MAP_OPT_META_COLUMN_VISIBILITY:
			m.visibility = v
		}
	}
	return m, nil
}

func intSeq(v []byte) []uint64 {
	var out []uint64
	for p := 0; p < len(v); {
		i, _, n := mysql.LengthEncodedInt(v[p:])
		out = append(out, i)
		p += n
	}
	return out
}

// charsetSeq is a default charset followed by (column index, collation) pairs.
func charsetSeq(v []byte) ([]uint64, error) {
	out := intSeq(v)
	if len(out)%2 != 1 {
		return nil, fmt.Errorf("default charset metadata has %d numbers, want an odd count", len(out))
	}
	return out, nil
}

func strValues(v []byte) ([][][]byte, error) {
	var out [][][]byte
	for p := 0; p < len(v); {
		nVal, _, n := mysql.LengthEncodedInt(v[p:])
		p += n
		vals := make([][]byte, 0, int(nVal))
		for range nVal {
			s, _, n, err := mysql.LengthEncodedString(v[p:])
			if err != nil {
				return nil, fmt.Errorf("ENUM/SET labels: %w", err)
			}
			p += n
			vals = append(vals, s)
		}
		out = append(out, vals)
	}
	return out, nil
}
