package redissink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Reader gives applications the handler's routing: which instance holds a row, and
// the row decoded. Build it from the same Config as the Handler.
type Reader struct {
	r *router
}

// NewReader validates cfg and returns a Reader; it connects lazily.
func NewReader(cfg Config) (*Reader, error) {
	r, err := newRouter(cfg)
	if err != nil {
		return nil, err
	}
	return &Reader{r: r}, nil
}

// Close closes the Reader's connections.
func (rd *Reader) Close() error { return rd.r.close() }

// Row is a stored row as an application sees it.
type Row struct {
	// Version is the source change sequence the row was written at.
	Version uint64
	// Values holds the non-NULL columns by stored name. Hash layout: the stored
	// text (integers, DECIMAL, floats, dates as text; bytes raw). JSON layout: strings
	// as they are (bytes columns stay base64), numbers as their JSON text.
	Values map[string]string
	// Null lists the stored columns that are NULL.
	Null map[string]bool
}

// ErrNoTable is returned for a table no rule of the Config matches.
var ErrNoTable = errors.New("redis sink: no table rule matches")

// Locate returns the Redis key of a row and the client of the instance holding it.
// recordKey is kanal's record key "<db>.<table>:<pk>" (schemas.AppendKey builds it).
func (rd *Reader) Locate(recordKey string) (key string, client *redis.Client, err error) {
	tbl, _, ok := strings.Cut(recordKey, ":")
	if !ok {
		return "", nil, fmt.Errorf("redis sink: %q is not a record key (db.table:pk)", recordKey)
	}
	t := rd.r.table(tbl)
	if t == nil {
		return "", nil, fmt.Errorf("%w: %s", ErrNoTable, tbl)
	}
	key = t.prefix + recordKey
	return key, rd.r.clients[t.instance(key)], nil
}

// Get reads a row by its record key. ok is false when the row does not exist.
func (rd *Reader) Get(ctx context.Context, recordKey string) (row Row, ok bool, err error) {
	key, cl, err := rd.Locate(recordKey)
	if err != nil {
		return Row{}, false, err
	}
	typ, err := cl.Type(ctx, key).Result()
	if err != nil {
		return Row{}, false, fmt.Errorf("redis sink: read %s: %w", recordKey, err)
	}
	switch typ {
	case "none":
		return Row{}, false, nil
	case "hash":
		m, err := cl.HGetAll(ctx, key).Result()
		if err != nil {
			return Row{}, false, fmt.Errorf("redis sink: read %s: %w", recordKey, err)
		}
		if len(m) == 0 {
			return Row{}, false, nil
		}
		row, err := DecodeHash(m)
		return row, err == nil, err
	case "string":
		v, err := cl.Get(ctx, key).Bytes()
		if errors.Is(err, redis.Nil) {
			return Row{}, false, nil
		}
		if err != nil {
			return Row{}, false, fmt.Errorf("redis sink: read %s: %w", recordKey, err)
		}
		row, err := DecodeJSON(v)
		return row, err == nil, err
	}
	return Row{}, false, fmt.Errorf("redis sink: %s holds a %s, not a row", recordKey, typ)
}

// DecodeHash decodes a row stored in the hash layout (HGETALL's result).
func DecodeHash(m map[string]string) (Row, error) {
	row := Row{Values: make(map[string]string, len(m)), Null: map[string]bool{}}
	for k, v := range m {
		switch k {
		case FieldVersion:
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return Row{}, fmt.Errorf("redis sink: bad %s %q", FieldVersion, v)
			}
			row.Version = n
		case FieldNulls:
			for _, n := range DecodeNulls(v) {
				row.Null[n] = true
			}
		case FieldSets:
		default:
			row.Values[k] = v
		}
	}
	return row, nil
}

// DecodeJSON decodes a row stored in the JSON layout.
func DecodeJSON(v []byte) (Row, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(v, &m); err != nil {
		return Row{}, fmt.Errorf("redis sink: stored JSON: %w", err)
	}
	row := Row{Values: make(map[string]string, len(m)), Null: map[string]bool{}}
	for k, raw := range m {
		switch {
		case k == FieldVersion:
			n, err := strconv.ParseUint(string(raw), 10, 64)
			if err != nil {
				return Row{}, fmt.Errorf("redis sink: bad %s %s", FieldVersion, raw)
			}
			row.Version = n
		case k == FieldSets:
		case bytes.Equal(raw, []byte("null")):
			row.Null[k] = true
		case len(raw) > 0 && raw[0] == '"':
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return Row{}, fmt.Errorf("redis sink: field %s: %w", k, err)
			}
			row.Values[k] = s
		default:
			row.Values[k] = string(raw)
		}
	}
	return row, nil
}

// SetMembers returns the members of a secondary set of table ("db.table"). Sets are
// kept next to their rows, so for a table spread over a ring each instance holds the
// members whose rows it holds: this reads every instance of the table and returns
// the union.
func (rd *Reader) SetMembers(ctx context.Context, table, setKey string) ([]string, error) {
	t := rd.r.table(table)
	if t == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoTable, table)
	}
	var out []string
	for _, name := range t.names {
		ms, err := rd.r.clients[name].SMembers(ctx, setKey).Result()
		if err != nil {
			return nil, fmt.Errorf("redis sink: SMEMBERS %s on %s: %w", setKey, name, err)
		}
		out = append(out, ms...)
	}
	return out, nil
}

// Instances returns the instance names a table's rows are spread over (one, or the
// ring's members) and the client of each, for scans and bulk reads.
func (rd *Reader) Instances(table string) (map[string]*redis.Client, error) {
	t := rd.r.table(table)
	if t == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoTable, table)
	}
	out := make(map[string]*redis.Client, len(t.names))
	for _, n := range t.names {
		out[n] = rd.r.clients[n]
	}
	return out, nil
}

// KeyPrefix returns the prefix of a table's row keys.
func (rd *Reader) KeyPrefix(table string) (string, error) {
	t := rd.r.table(table)
	if t == nil {
		return "", fmt.Errorf("%w: %s", ErrNoTable, table)
	}
	return t.prefix, nil
}
