package schemas

import "strings"

// BaseType returns the lower-case name of a column type without length,
// precision, members or attributes: "bigint(20) unsigned" → "bigint",
// "DECIMAL(12,2)" → "decimal". Column.Type holds MySQL's full type; codecs and
// sinks map values and target types by this name.
func BaseType(typ string) string {
	if i := strings.IndexAny(typ, "( "); i >= 0 {
		typ = typ[:i]
	}
	return strings.ToLower(typ)
}
