package memcachedsink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/bradfitz/gomemcache/memcache"
)

// Row is a stored row, decoded.
type Row struct {
	// Version is the change sequence (Change.Seq) of the change that wrote it.
	Version uint64
	// Values are the stored columns by stored name: JSON numbers as json.Number
	// (exact), DECIMAL and text as strings, bytes as base64 strings, NULL as nil.
	Values map[string]any
}

// ErrNotRow is returned by Decode for a value the sink did not write.
var ErrNotRow = errors.New("memcached sink: not a stored row")

// Decode decodes a stored value. ok is false for a tombstone (the row was
// deleted).
func Decode(value []byte) (row Row, ok bool, err error) {
	if !bytes.HasPrefix(value, []byte(`{"`+FieldVersion+`":`)) {
		return Row{}, false, ErrNotRow
	}
	ver, deleted := storedVersion(value)
	if deleted {
		return Row{Version: ver}, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return Row{}, false, fmt.Errorf("%w: %v", ErrNotRow, err)
	}
	delete(m, FieldVersion)
	return Row{Version: ver, Values: m}, true, nil
}

// Reader reads rows the way a Handler built from the same Config stores them:
// same servers, same key templates.
type Reader struct {
	r  *router
	mc *memcache.Client
}

// NewReader builds a Reader from cfg (validated here).
func NewReader(cfg Config) (*Reader, error) {
	r, err := newRouter(cfg)
	if err != nil {
		return nil, err
	}
	mc := memcache.New(cfg.Servers...)
	mc.Timeout = cfg.Timeout
	return &Reader{r: r, mc: mc}, nil
}

// ItemKey returns the memcached key of a record key ("<db>.<table>:<pk>"), and
// false when no table rule matches its table.
func (rd *Reader) ItemKey(recordKey string) (string, bool) {
	table, _, _ := strings.Cut(recordKey, ":")
	t := rd.r.table(table)
	if t == nil {
		return "", false
	}
	return t.key.render(table, recordKey), true
}

// Get reads the row of a record key. ok is false when memcached holds no row
// for it (never written, deleted, or evicted).
func (rd *Reader) Get(recordKey string) (Row, bool, error) {
	k, ok := rd.ItemKey(recordKey)
	if !ok {
		return Row{}, false, fmt.Errorf("memcached sink: no table rule matches %q", recordKey)
	}
	it, err := rd.mc.Get(k)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return Row{}, false, nil
	}
	if err != nil {
		return Row{}, false, fmt.Errorf("memcached sink: get %q: %w", k, err)
	}
	return Decode(it.Value)
}

// Close closes the connections.
func (rd *Reader) Close() error { return rd.mc.Close() }
