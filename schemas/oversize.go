package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
)

// An oversize marker stands in for a change whose record exceeded the producer's
// size limit (kafka.max_record_bytes, or a topic's smaller max.message.bytes) when
// kafka.oversize_policy is "skip". It goes to the table topic in the change's place,
// with the change's key and the headers HeaderOp, HeaderPos, HeaderSeq,
// HeaderFormat = FormatOversize and HeaderOversize; a copy goes to OversizeTopic.
// Its value is never null, so it is not a tombstone: compaction keeps the row's key,
// and a consumer that does not know markers fails to decode it instead of deleting
// the row.
//
// FormatOversize is the kanal.format of an oversize marker. It is not a
// kafka.format: no change is ever encoded in it.
const FormatOversize = "oversize"

// Oversize is the value of an oversize marker, JSON under one top-level key:
//
//	{"kanal_oversize":{"op":"u","seq":42,"db":"shop","table":"docs","key":"shop.docs:7",
//	  "pos":"binlog.000003:8812","row":0,"bytes":20971600,"limit":16777216}}
type Oversize struct {
	Op    Op     `json:"op"`
	Seq   uint64 `json:"seq"`
	DB    string `json:"db"`
	Table string `json:"table"`
	// Key is the record key of the change left out.
	Key string `json:"key"`
	// Pos is the binlog position of the change's rows event ("file:pos"), Row its
	// index in the binlog transaction.
	Pos string `json:"pos"`
	Row int    `json:"row"`
	// Bytes is the size of the record that was left out (key, value and headers),
	// Limit the largest size the topic took.
	Bytes int `json:"bytes"`
	Limit int `json:"limit"`
}

type oversizeValue struct {
	Oversize *Oversize `json:"kanal_oversize"`
}

// Marshal returns the marker's record value.
func (o *Oversize) Marshal() []byte {
	b, _ := json.Marshal(oversizeValue{o}) // plain fields: cannot fail
	return b
}

// ErrOversize is wrapped (together with ErrDecode) when Decode meets an oversize
// marker: the change it stands for was left out by the producer.
var ErrOversize = errors.New("kanal: oversize marker: the producer left this change out")

// OversizeError is what Decode returns for an oversize marker; it names the change.
type OversizeError struct{ Oversize Oversize }

func (e *OversizeError) Error() string {
	o := &e.Oversize
	return fmt.Sprintf("%v: %s.%s key %s at %s row %d (seq %d, op %s): its record of %d bytes exceeded the limit of %d bytes "+
		"(kafka.oversize_policy: skip); the row is not in this topic, see the _oversize topic",
		ErrOversize, o.DB, o.Table, o.Key, o.Pos, o.Row, o.Seq, o.Op, o.Bytes, o.Limit)
}

// Is makes errors.Is match ErrOversize and ErrDecode.
func (e *OversizeError) Is(target error) bool { return target == ErrOversize || target == ErrDecode }

// DecodeOversize decodes an oversize marker's value.
func DecodeOversize(value []byte) (Oversize, error) {
	var v oversizeValue
	if err := json.Unmarshal(value, &v); err != nil || v.Oversize == nil {
		return Oversize{}, fmt.Errorf("%w: not an oversize marker: %s", ErrDecode, truncateText(value, 80))
	}
	return *v.Oversize, nil
}

// oversizeDecodeError returns the error Decode gives for an oversize marker.
func oversizeDecodeError(value []byte) error {
	o, err := DecodeOversize(value)
	if err != nil {
		return err
	}
	return &OversizeError{Oversize: o}
}

func truncateText(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "…"
}
