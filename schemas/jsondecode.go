package schemas

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Decoder decodes change records, caching what repeats from record to record
// (the column list of each table) so that decoding one costs about the row's
// values. A Decoder is not safe for concurrent use: give each goroutine its own
// (the consumer Runner keeps one per partition). The package-level DecodeJSON
// and Decode draw decoders from a pool.
//
// Changes from one Decoder may share their Columns slice with other changes of
// the same table: treat Change.Columns as read-only.
type Decoder struct {
	// Alias lets decoded text values and Source strings point into the input
	// instead of copies of them. Set it only when the input bytes are never
	// modified afterwards, as with a Kafka record's value (franz-go never
	// reuses them), and when nothing keeps a decoded string for long: it keeps
	// the whole input alive (for a Kafka record, its whole fetched batch).
	//
	// Without it the JSON fast path copies the text values into blocks of
	// textBlock bytes shared by the records decoded one after the other (and
	// reuses the Source names it has seen), so that a kept value keeps at most
	// its block alive, never the input.
	//
	// Either way the fast paths box the row values they put in a map (integers,
	// doubles, text, decimals) in blocks of the same size shared by consecutive
	// records rather than one allocation each (see boxes): a kept value keeps
	// its block alive too.
	Alias bool
	// SkipUpdateBefore leaves Change.Before nil for updates decoded by the JSON
	// fast path: the before image is still checked (a record is accepted or
	// refused exactly as without it) but no map is built, for consumers that
	// read only the after image of an update. Deletes keep theirs: it is their
	// only image.
	SkipUpdateBefore bool
	// Schemas looks up the writer schemas of Avro records and the descriptors
	// of json-compact ones; without it such records cannot be decoded. It may
	// be shared by many Decoders.
	Schemas SchemaResolver

	cols map[string]*colsInfo
	// lastCols is the column list of the last record, lastColsText its text.
	lastCols     *colsInfo
	lastColsText string
	avro         map[avroSchemaKey]*avroPlan // compiled Avro writer schemas
	// compact are the json-compact descriptors looked up, lastCompact the
	// last record's (most records are of the table before them).
	compact       map[uint64]*compactDesc
	lastCompact   *compactDesc
	lastCompactFP uint64
	// text is the current block of copied text values; names the Source names
	// seen, as owned strings.
	text  []byte
	names map[string]string
	// box holds the current blocks of boxed row values (see boxes).
	box boxes
	// recent are the last names returned, looked at before names.
	recent     [4]string
	nextRecent int
}

// textBlock is the size of the blocks text values are copied into: the values
// of several records of a typical table, so that copying costs about one
// allocation per several records, and a value a handler keeps holds on to at
// most this much. A value of more than a quarter of it gets its own.
const textBlock = 1024

// maxNames bounds Decoder.names; a consumer of more distinct source names
// starts the map over.
const maxNames = 256

// ownText returns a copy of s in the current text block.
func (d *Decoder) ownText(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) > textBlock/4:
		return strings.Clone(s)
	case cap(d.text)-len(d.text) < len(s):
		d.text = make([]byte, 0, textBlock)
	}
	start := len(d.text)
	d.text = append(d.text, s...)
	// Never written again: later values are appended after it, and a full
	// block is replaced, not reused.
	return unsafe.String(&d.text[start], len(s))
}

// ownName returns s as a string of its own, the same one for the same name.
func (d *Decoder) ownName(s string) string {
	// A record's names (source name, file, database, table) are mostly the
	// previous record's: compared before a map lookup hashes them.
	for _, v := range d.recent {
		if v == s {
			return v
		}
	}
	v, ok := d.names[s]
	if !ok {
		v = d.newName(s)
	}
	d.recent[d.nextRecent] = v
	d.nextRecent = (d.nextRecent + 1) % len(d.recent)
	return v
}

// newName adds s to the names.
func (d *Decoder) newName(s string) string {
	if d.names == nil || len(d.names) >= maxNames {
		d.names = make(map[string]string, 16)
	}
	v := strings.Clone(s)
	d.names[v] = v
	return v
}

// colsInfo is a decoded "columns" array with each column's value kind.
type colsInfo struct {
	text  string // the "columns" array as the records hold it
	cols  []Column
	kinds []Kind
	// keys are the columns' row keys as kanal writes them, `"name":`, or ""
	// for a name that is not matched as bytes (see rowKey).
	keys []string
}

// rowKey returns `"name":`, the key of column name in a row image as kanal
// writes it, or "" when a string token of name could not be written as it is
// (name holds a quote, a backslash, a control character or invalid UTF-8). For
// the others, the input holds `"name":` exactly when jsonScan.key would read name
// there with no white space before the colon, so the bytes can be compared
// instead of reading the token.
func rowKey(name string) string {
	if !utf8.ValidString(name) || strings.ContainsAny(name, "\"\\") {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 {
			return ""
		}
	}
	return `"` + name + `":`
}

// maxCachedColumnLists bounds a Decoder's column cache; a consumer of more
// distinct table layouts than this starts the cache over (each layout change of
// a table, an ALTER, is a new entry).
const maxCachedColumnLists = 1024

// NewDecoder returns a Decoder with an empty cache. The zero Decoder is ready to
// use as well.
func NewDecoder() *Decoder { return &Decoder{cols: map[string]*colsInfo{}} }

var decoders = sync.Pool{New: func() any { return NewDecoder() }}

// DecodeJSON is the package-level DecodeJSON with this decoder's cache.
//
// The envelopes kanal writes take a fast path: one pass over the bytes, no
// reflection, text values copied out of them (see Alias). Anything
// else it does not expect (other key orders, unknown keys, escapes it does not
// handle, invalid input) is decoded by encoding/json instead, which also gives
// the error messages, so both paths accept and reject exactly the same input.
func (d *Decoder) DecodeJSON(data []byte) (*Change, error) {
	if c, ok := d.fastJSON(data); ok {
		return c, nil
	}
	return decodeJSONStd(data)
}

// jsonScan walks a kanal JSON envelope held in s. Every method reports false
// when the input is not what the fast path handles; the caller then falls back.
type jsonScan struct {
	s string
	i int
	// d owns what the result keeps of s, unless alias is set (Decoder.Alias).
	d     *Decoder
	alias bool
}

// text returns a text value of the result: s itself when aliasing, else a copy.
func (p *jsonScan) text(s string) string {
	if p.alias {
		return s
	}
	return p.d.ownText(s)
}

// name returns a Source name of the result (see text).
func (p *jsonScan) name(s string) string {
	if p.alias {
		return s
	}
	return p.d.ownName(s)
}

// knownOp returns the constant for a known operation (so that the result does
// not keep the input), and s as it is otherwise (the change is then refused).
func knownOp(s string) Op {
	for _, op := range []Op{OpCreate, OpUpdate, OpDelete, OpRead, OpTruncate} {
		if string(op) == s {
			return op
		}
	}
	return Op(s)
}

func (p *jsonScan) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// lit consumes the literal t (after white space).
func (p *jsonScan) lit(t string) bool {
	p.ws()
	if strings.HasPrefix(p.s[p.i:], t) {
		p.i += len(t)
		return true
	}
	return false
}

// str reads a string token without escapes; s is a substring of the record.
func (p *jsonScan) str() (s string, ok bool) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start := p.i + 1
	ascii := true
	j := start
	// Skip eight plain ASCII bytes at a time, as the encoder does.
	for j+8 <= len(p.s) && plainASCII8(load8(p.s, j)) {
		j += 8
	}
	for ; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			s = p.s[start:j]
			if !ascii && !utf8.ValidString(s) {
				return "", false // encoding/json replaces invalid UTF-8; let it
			}
			p.i = j + 1
			return s, true
		case c == '\\':
			return p.escaped(start - 1)
		case c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
	}
	return "", false
}

// escaped reads the string starting with the quote at q that has escapes, with
// encoding/json (rare: quotes, backslashes, control characters, U+2028/9).
func (p *jsonScan) escaped(q int) (string, bool) {
	for j := q + 1; j < len(p.s); j++ {
		switch p.s[j] {
		case '\\':
			j++
		case '"':
			var s string
			if json.Unmarshal([]byte(p.s[q:j+1]), &s) != nil {
				return "", false
			}
			p.i = j + 1
			return s, true
		}
	}
	return "", false
}

// num reads a number token, checked against JSON's grammar (strconv alone
// would also take "+1" or "01").
func (p *jsonScan) num() (string, bool) {
	p.ws()
	start := p.i
	digits := func() int {
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case digits() == 0:
		return "", false
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return "", false
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return "", false
		}
	}
	return p.s[start:p.i], true
}

// key reads `"name":`.
func (p *jsonScan) key() (string, bool) {
	k, ok := p.str()
	if !ok || !p.lit(":") {
		return "", false
	}
	return k, true
}

// Object keys as kanal writes them, in its order, quoted with their colon (see
// keyIn): the envelope's and the source block's.
var (
	envelopeKeys = []string{`"op":`, `"seq":`, `"source":`, `"columns":`, `"before":`, `"after":`, `"key_fallback":`}
	sourceKeys   = []string{`"name":`, `"server_id":`, `"file":`, `"pos":`, `"gtid":`, `"ts_ms":`, `"db":`, `"table":`, `"row":`}
)

// keyIn is key for objects whose keys kanal writes in the order of keys (each
// `"name":`, a name written as it is): it first compares the input with the
// keys from *next on, as bytes, and moves *next past the one that matched. The
// input holds `"name":` exactly when key would read name there with no white
// space before the colon; anything else (another order, white space, escapes,
// unknown keys) is read by key.
func (p *jsonScan) keyIn(keys []string, next *int) (string, bool) {
	p.ws()
	rest := p.s[p.i:]
	for j := *next; j < len(keys); j++ {
		if q := keys[j]; strings.HasPrefix(rest, q) {
			p.i += len(q)
			*next = j + 1
			return q[1 : len(q)-2], true
		}
	}
	return p.key()
}

// next consumes a ',' and reports true, or the closing byte end and reports false;
// ok is false on anything else.
func (p *jsonScan) next(end byte) (more, ok bool) {
	p.ws()
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case ',':
			p.i++
			return true, true
		case end:
			p.i++
			return false, true
		}
	}
	return false, false
}

func (d *Decoder) fastJSON(data []byte) (*Change, bool) {
	c := &Change{}
	if !d.fastJSONInto(data, c) {
		return nil, false
	}
	return c, true
}

// oneChange is a decoded change and the slice Decode returns it in, allocated
// together.
type oneChange struct {
	c    Change
	list [1]*Change
}

// fastOneJSON is fastJSON returning the change as Decode does.
func (d *Decoder) fastOneJSON(data []byte) ([]*Change, bool) {
	o := &oneChange{}
	if !d.fastJSONInto(data, &o.c) {
		return nil, false
	}
	o.list[0] = &o.c
	return o.list[:], true
}

// decodeOneJSON is DecodeJSON returning the change as Decode does.
func (d *Decoder) decodeOneJSON(data []byte) ([]*Change, error) {
	if cs, ok := d.fastOneJSON(data); ok {
		return cs, nil
	}
	c, err := decodeJSONStd(data)
	if err != nil {
		return nil, err
	}
	return []*Change{c}, nil
}

// fastJSONInto decodes data into the zero Change c on the fast path, and
// reports false (c then holds anything) when data is not what it takes.
func (d *Decoder) fastJSONInto(data []byte, c *Change) bool {
	// The input is read in place; what the result keeps of it is copied (or
	// not, with Alias) as it is taken (jsonScan.text, jsonScan.name).
	p := &jsonScan{d: d, alias: d.Alias}
	if len(data) > 0 {
		p.s = unsafe.String(&data[0], len(data))
	}
	if !p.lit("{") {
		return false
	}
	var info *colsInfo
	// Each key at most once, and the columns before the rows, as kanal writes
	// them; anything else goes to encoding/json, whose answer (the last of
	// repeated keys, or an error) is the reference.
	var seen uint8
	once := func(bit uint8) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	}
	const (
		seenOp = 1 << iota
		seenColumns
		seenSeq
		seenSource
		seenBefore
		seenAfter
		seenKeyFallback
	)
	next := 0
	for more := true; more; {
		k, ok := p.keyIn(envelopeKeys, &next)
		if !ok {
			return false
		}
		switch k {
		case "op":
			s, ok := p.str()
			if !ok || !once(seenOp) {
				return false
			}
			c.Op = knownOp(s)
		case "seq":
			n, ok := p.num()
			if !ok || !once(seenSeq) {
				return false
			}
			v, err := parseUint(n, 64)
			if err != nil {
				return false
			}
			c.Seq = v
		case "source":
			if !once(seenSource) || !p.source(&c.Source) {
				return false
			}
		case "columns":
			if !once(seenColumns) {
				return false
			}
			if info, ok = d.columns(p); !ok {
				return false
			}
		case "before", "after":
			bit := uint8(seenBefore)
			if k == "after" {
				bit = seenAfter
			}
			if !once(bit) || info == nil {
				return false
			}
			if p.lit("null") {
				break
			}
			// An update's before image is checked but not built when no one
			// reads it (op comes first as kanal writes it).
			keep := k == "after" || !d.SkipUpdateBefore || c.Op != OpUpdate
			row, ok := p.row(info, keep)
			if !ok {
				return false
			}
			if k == "before" {
				c.Before = row
			} else {
				c.After = row
			}
		case "key_fallback":
			if !once(seenKeyFallback) {
				return false
			}
			switch {
			case p.lit("true"):
				c.KeyFallback = true
			case p.lit("false"):
			default:
				return false
			}
		default:
			return false
		}
		if more, ok = p.next('}'); !ok {
			return false
		}
	}
	if p.ws(); p.i != len(p.s) || seen&(seenOp|seenColumns) != seenOp|seenColumns || !c.Op.Valid() {
		return false
	}
	c.Columns = info.cols
	if checkImages(c) != nil {
		return false
	}
	return true
}

func (p *jsonScan) source(s *Source) bool {
	if !p.lit("{") {
		return false
	}
	next := 0
	for more := true; more; {
		k, ok := p.keyIn(sourceKeys, &next)
		if !ok {
			return false
		}
		switch k {
		case "name", "file", "gtid", "db", "table":
			v, ok := p.str()
			if !ok {
				return false
			}
			switch k {
			case "name":
				s.Name = p.name(v)
			case "file":
				s.File = p.name(v)
			case "gtid":
				s.GTID = p.text(v) // one per transaction: not worth remembering
			case "db":
				s.DB = p.name(v)
			case "table":
				s.Table = p.name(v)
			}
		case "server_id", "pos":
			n, ok := p.num()
			if !ok {
				return false
			}
			v, err := parseUint(n, 32)
			if err != nil {
				return false
			}
			if k == "pos" {
				s.Pos = uint32(v)
			} else {
				s.ServerID = uint32(v)
			}
		case "ts_ms", "row":
			n, ok := p.num()
			if !ok {
				return false
			}
			v, err := parseInt(n)
			if err != nil {
				return false
			}
			if k == "row" {
				if int64(int(v)) != v {
					return false
				}
				s.Row = int(v)
			} else {
				s.TsMs = v
			}
		default:
			return false
		}
		if more, ok = p.next('}'); !ok {
			return false
		}
	}
	return true
}

// columns reads the "columns" array, from the cache when this exact text was seen.
func (d *Decoder) columns(p *jsonScan) (*colsInfo, bool) {
	p.ws()
	start := p.i
	if !p.lit("[") {
		return nil, false
	}
	// Find the end first: a cached list costs a scan and a map lookup. A name
	// containing ']' makes this end early and the lookup miss: such a table's
	// columns are parsed every time, still correctly.
	end := strings.IndexByte(p.s[p.i:], ']')
	if end < 0 {
		return nil, false
	}
	text := p.s[start : p.i+end+1]
	// Consecutive records are mostly of one table: comparing with the last list
	// costs less than hashing it for the map.
	if d.lastCols != nil && text == d.lastColsText {
		p.i += end + 1
		return d.lastCols, true
	}
	if info, ok := d.cols[text]; ok {
		p.i += end + 1
		d.lastColsText, d.lastCols = info.text, info
		return info, true
	}
	info := &colsInfo{cols: []Column{}}
	if p.lit("]") {
		return d.remember(p.s[start:p.i], info), true
	}
	for more := true; more; {
		if !p.lit("{") {
			return nil, false
		}
		var col Column
		var named bool
		for more := true; more; {
			k, ok := p.key()
			if !ok {
				return nil, false
			}
			switch k {
			case "name":
				if col.Name, ok = p.str(); !ok {
					return nil, false
				}
				named = true
			case "type":
				if col.Type, ok = p.str(); !ok {
					return nil, false
				}
			case "pk":
				switch {
				case p.lit("true"):
					col.PK = true
				case p.lit("false"):
				default:
					return nil, false
				}
			default:
				return nil, false
			}
			if more, ok = p.next('}'); !ok {
				return nil, false
			}
		}
		if !named {
			return nil, false
		}
		for _, prev := range info.cols {
			if prev.Name == col.Name {
				return nil, false // encoding/json's answer to a repeated name is the reference
			}
		}
		// Cached lists outlive the record: own their strings.
		col.Name, col.Type = strings.Clone(col.Name), strings.Clone(col.Type)
		info.cols = append(info.cols, col)
		info.kinds = append(info.kinds, col.Kind())
		var ok bool
		if more, ok = p.next(']'); !ok {
			return nil, false
		}
	}
	return d.remember(p.s[start:p.i], info), true
}

func (d *Decoder) remember(text string, info *colsInfo) *colsInfo {
	if d.cols == nil { // a zero Decoder works too
		d.cols = map[string]*colsInfo{}
	}
	if len(d.cols) >= maxCachedColumnLists {
		clear(d.cols)
	}
	info.text = strings.Clone(text)
	info.keys = make([]string, len(info.cols))
	for i, c := range info.cols {
		info.keys[i] = rowKey(c.Name)
	}
	d.cols[info.text] = info
	d.lastColsText, d.lastCols = info.text, info
	return info
}

// row decodes a row image whose keys are the columns in table order, as kanal
// writes them. Unless keep is set it only checks the image (see
// Decoder.SkipUpdateBefore) and returns a nil map.
func (p *jsonScan) row(info *colsInfo, keep bool) (map[string]any, bool) {
	if !p.lit("{") {
		return nil, false
	}
	var row map[string]any
	if keep {
		row = make(map[string]any, len(info.cols))
	}
	if len(info.cols) == 0 {
		return row, p.lit("}")
	}
	for i, col := range info.cols {
		// The key as kanal writes it is matched as bytes; anything else is
		// read as a string token and compared.
		if p.ws(); info.keys[i] != "" && strings.HasPrefix(p.s[p.i:], info.keys[i]) {
			p.i += len(info.keys[i])
		} else if k, ok := p.key(); !ok || k != col.Name {
			return nil, false
		}
		v, ok := p.value(info.kinds[i], keep)
		if !ok {
			return nil, false
		}
		if keep {
			row[col.Name] = v
		}
		more, ok := p.next('}')
		if !ok || more != (i < len(info.cols)-1) {
			return nil, false
		}
	}
	return row, true
}

// value reads one column value of kind k, as decodeJSONValue would return it;
// unless keep is set it only checks it and returns nil. Values are boxed in the
// decoder's shared blocks (see boxes).
func (p *jsonScan) value(k Kind, keep bool) (any, bool) {
	if p.lit("null") {
		return nil, true
	}
	switch k {
	case KindInt, KindYear:
		n, ok := p.num()
		if !ok {
			return nil, false
		}
		v, err := parseInt(n)
		if !keep || err != nil {
			return nil, err == nil
		}
		return p.d.box.int64(v), true
	case KindUint, KindBit:
		n, ok := p.num()
		if !ok {
			return nil, false
		}
		v, err := parseUint(n, 64)
		if !keep || err != nil {
			return nil, err == nil
		}
		return p.d.box.uint64(v), true
	case KindFloat, KindDouble:
		p.ws()
		var n string
		var ok bool
		if p.i < len(p.s) && p.s[p.i] == '"' {
			n, ok = p.str() // NaN and ±Inf
		} else {
			n, ok = p.num()
		}
		if !ok {
			return nil, false
		}
		if k == KindFloat {
			f, err := strconv.ParseFloat(n, 32)
			if !keep {
				return nil, err == nil
			}
			return float32(f), err == nil
		}
		f, err := strconv.ParseFloat(n, 64)
		if !keep || err != nil {
			return nil, err == nil
		}
		return p.d.box.float64(f), true
	}
	s, ok := p.str()
	switch {
	case !ok:
		return nil, false
	case k == KindBytes:
		b, err := base64.StdEncoding.DecodeString(s)
		if !keep {
			return nil, err == nil
		}
		return b, err == nil
	case !keep:
		return nil, true
	case k == KindDecimal:
		return p.d.box.decimal(Decimal(p.text(s))), true
	}
	return p.d.box.string(p.text(s)), true
}
