// Package filter is the expression language of summary tables: the row filter
// ("where"), group-by items and measures. It is parsed and evaluated in Go
// against a change's row; no part of it is ever sent to a database, so it cannot
// inject SQL.
//
// The grammar of a filter:
//
//	filter   = or
//	or       = and { OR and }
//	and      = not { AND not }
//	not      = NOT not | pred
//	pred     = "(" or ")" | value [ cmp value | [NOT] IN "(" value {"," value} ")"
//	           | IS [NOT] NULL | [NOT] BETWEEN value AND value ]
//	value    = column | literal | func "(" column ")"
//	literal  = 'text' ('' inside is one quote) | number | NULL | TRUE | FALSE
//	cmp      = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//	func     = day | month | year | hour
//	column   = name | `name` | "name"
//
// Comparisons follow SQL: a comparison with NULL is unknown, AND, OR and NOT
// use three-valued logic, and a row matches only when the filter is true.
// Values compare as numbers when both are numbers (or numeric text), otherwise
// as text. A group-by item is a column or a derived function of one, and a
// measure is count, count(*) or sum(column), each optionally "AS name" (see
// ParseGroup and ParseMeasure).
package filter
