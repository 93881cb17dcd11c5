package redissink

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Errors name the instance, partition, tables, keys and offsets they concern:
// these render the last three.

// partName names a partition in errors.
func partName(pk partKey) string {
	if pk.topic == "" {
		return "batch without Kafka coordinates"
	}
	return "topic " + pk.topic + " partition " + strconv.FormatInt(int64(pk.partition), 10)
}

// offsetRange names the offsets of ops in errors.
func offsetRange(ops []*op) string {
	if len(ops) == 0 {
		return "no changes"
	}
	a, b := ops[0].rec.Offset, ops[len(ops)-1].rec.Offset
	if a == b {
		return fmt.Sprintf("offset %d (%d changes)", a, len(ops))
	}
	return fmt.Sprintf("offsets %d-%d (%d changes)", a, b, len(ops))
}

// describeRows names rows in errors: "table t, key k, offset o" for one;
// "tables t, u, keys k … l, offsets o-p (n rows)" for several. Offsets are left
// out for a batch without Kafka coordinates.
func describeRows(pk partKey, rows []*op) string {
	if len(rows) == 0 {
		return "no rows"
	}
	if len(rows) == 1 {
		o := rows[0]
		if pk.topic == "" {
			return fmt.Sprintf("table %s, key %s", o.table, o.recKey)
		}
		return fmt.Sprintf("table %s, key %s, offset %d", o.table, o.recKey, o.rec.Offset)
	}
	var tables []string
	for _, o := range rows {
		if !slices.Contains(tables, o.table) {
			tables = append(tables, o.table)
		}
	}
	first, last := rows[0], rows[len(rows)-1]
	label := "table"
	if len(tables) > 1 {
		label = "tables"
	}
	if pk.topic == "" {
		return fmt.Sprintf("%s %s, keys %s … %s (%d rows)", label, strings.Join(tables, ", "), first.recKey, last.recKey, len(rows))
	}
	return fmt.Sprintf("%s %s, keys %s … %s, offsets %d-%d (%d rows)", label, strings.Join(tables, ", "),
		first.recKey, last.recKey, first.rec.Offset, last.rec.Offset, len(rows))
}
