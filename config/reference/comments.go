package reference

import (
	"reflect"
	"strings"
)

// describe returns the description of a setting or type (comment key k): its Go
// doc comment, from the generated map, or the supplement where the owner of
// the type has not written one yet.
func describe(comments map[string]string, k string) string {
	if c := comments[k]; c != "" {
		return c
	}
	return supplement[k]
}

// describeSetting describes a setting: its field's comment, or else the doc
// comment of the struct type it holds.
func describeSetting(comments map[string]string, s setting) string {
	if d := describe(comments, s.comment); d != "" {
		return d
	}
	if t := deref(s.typ); t.Kind() == reflect.Struct && t.Name() != "" {
		return describe(comments, typeKey(t))
	}
	return ""
}

// supplement describes the settings whose Go fields have no doc comment of
// their own (a test fails once one gets a comment: then delete it here).
var supplement = map[string]string{
	"github.com/kanal-cdc/kanal/producer.SourceConfig.User":              "User is the account kanal reads the binlog as; it needs REPLICATION SLAVE and REPLICATION CLIENT (MariaDB 10.5+: BINLOG MONITOR), checked at start. kanal reads no table, so SELECT is not needed.",
	"github.com/kanal-cdc/kanal/producer.SourceConfig.Password":          "Password of User. Write it as ${VAR}: it never appears in logs or errors.",
	"github.com/kanal-cdc/kanal/producer.TablesConfig.Include":           "Include: tables matching one of these \"db.table\" globs are captured (none: every table).",
	"github.com/kanal-cdc/kanal/producer.TablesConfig.Exclude":           "Exclude: tables matching one of these \"db.table\" globs are not captured, even when included.",
	"github.com/kanal-cdc/kanal/sinks/redis.InstanceConfig.DialTimeout":  "DialTimeout bounds connecting to the instance (0: go-redis' default, 5s).",
	"github.com/kanal-cdc/kanal/sinks/redis.InstanceConfig.ReadTimeout":  "ReadTimeout bounds a socket read (0: go-redis' default, 3s).",
	"github.com/kanal-cdc/kanal/sinks/redis.InstanceConfig.WriteTimeout": "WriteTimeout bounds a socket write (0: ReadTimeout).",
}

// oneLine joins a doc comment's lines.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
