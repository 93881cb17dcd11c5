package schemas

import (
	"context"
	"encoding/json"
	"fmt"
)

// Decode decodes a record value in the given format, as named by the kanal.format
// header: FormatJSON ("json") yields one change, FormatCanalJSON ("canal-json") one
// change per row of the message. With format "" the shape decides: a top-level "op"
// field means kanal JSON, "type" and "data" canal-json. Errors wrap ErrDecode (and
// ErrDDL for canal-json DDL messages, ErrOversize with an *OversizeError for oversize
// markers, FormatOversize); an unknown format is an error naming it.
func Decode(format string, value []byte) ([]*Change, error) {
	d := decoders.Get().(*Decoder)
	defer decoders.Put(d)
	return d.Decode(format, value)
}

// Decode is the package-level Decode with this decoder's cache (and schema
// resolver, for the Avro formats).
func (d *Decoder) Decode(format string, value []byte) ([]*Change, error) {
	return d.DecodeContext(context.Background(), format, value)
}

// DecodeContext is Decode with a context for looking up Avro writer schemas. An
// error wrapping ErrSchemaUnavailable (and not ErrDecode) means the schema could
// not be looked up now: decoding may succeed later.
func (d *Decoder) DecodeContext(ctx context.Context, format string, value []byte) ([]*Change, error) {
	if format == FormatOversize {
		return nil, oversizeDecodeError(value)
	}
	if format == "" {
		// What the fast path takes is kanal JSON (it has "op"): skip sniffing.
		if cs, ok := d.fastOneJSON(value); ok {
			return cs, nil
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(value, &top); err != nil {
			return nil, fmt.Errorf("%w: record value is not a JSON object: %v", ErrDecode, err)
		}
		_, hasOp := top["op"]
		_, hasType := top["type"]
		_, hasData := top["data"]
		_, isOversize := top["kanal_oversize"]
		switch {
		case isOversize:
			return nil, oversizeDecodeError(value)
		case hasOp:
			format = FormatJSON
		case hasType && hasData:
			format = FormatCanalJSON
		default:
			return nil, fmt.Errorf("%w: record value is neither kanal json nor canal-json", ErrDecode)
		}
	}
	f := lookupFormat(format)
	if f == nil {
		return nil, fmt.Errorf("%w: unknown format %q", ErrDecode, format)
	}
	return f.decoder(d).Decode(ctx, value)
}
