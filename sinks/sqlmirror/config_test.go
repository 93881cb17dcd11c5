package sqlmirror_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kanal-cdc/kanal/sinks/sqlmirror"
)

func TestConfigValidate(t *testing.T) {
	valid := func() sqlmirror.Config {
		c := sqlmirror.DefaultConfig()
		c.Name, c.Dialect, c.DSN = "m", sqlmirror.Postgres, "postgres://u:pw@h/db"
		return c
	}
	for _, tc := range []struct {
		field string
		edit  func(*sqlmirror.Config)
	}{
		{"name", func(c *sqlmirror.Config) { c.Name = "a b" }},
		{"dialect", func(c *sqlmirror.Config) { c.Dialect = "oracle" }},
		{"dsn", func(c *sqlmirror.Config) { c.DSN = "" }},
		{"version_column", func(c *sqlmirror.Config) { c.VersionColumn = "v; drop" }},
		{"offsets_table", func(c *sqlmirror.Config) { c.OffsetsTable = "" }},
		{"max_open_conns", func(c *sqlmirror.Config) { c.MaxOpenConns = 0 }},
		{"write_server_id", func(c *sqlmirror.Config) { c.WriteServerID = 7 }},
		{"case_sensitive", func(c *sqlmirror.Config) { c.CaseSensitive = true }},
		{"truncate_to_millis", func(c *sqlmirror.Config) { c.TruncateToMillis = true }},
		{"tables[0].source", func(c *sqlmirror.Config) { c.Tables = []sqlmirror.TableConfig{{Source: "nodb"}} }},
		{"tables[0].source", func(c *sqlmirror.Config) { c.Tables = []sqlmirror.TableConfig{{Source: "db.*"}} }},
		{"tables[1].source", func(c *sqlmirror.Config) {
			c.Tables = []sqlmirror.TableConfig{{Source: "db.t"}, {Source: "db.t"}}
		}},
		{"tables[0].target", func(c *sqlmirror.Config) { c.Tables = []sqlmirror.TableConfig{{Source: "db.t", Target: "a.b.c"}} }},
		{"tables[0]", func(c *sqlmirror.Config) {
			c.Tables = []sqlmirror.TableConfig{{Source: "db.t", Include: []string{"a"}, Exclude: []string{"b"}}}
		}},
		{"tables[0].rename.a", func(c *sqlmirror.Config) {
			c.Tables = []sqlmirror.TableConfig{{Source: "db.t", Rename: map[string]string{"a": "_kanal_version"}}}
		}},
	} {
		c := valid()
		tc.edit(&c)
		err := c.Validate()
		if !errors.Is(err, sqlmirror.ErrConfig) || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("%s: Validate() = %v, want an ErrConfig naming %s", tc.field, err, tc.field)
		}
	}
	c := valid()
	if err := c.Validate(); err != nil {
		t.Fatalf("the valid config: %v", err)
	}
}

// TestDSNNeverInErrors: a DSN that cannot be parsed is reported without
// quoting it (it holds the password).
func TestDSNNeverInErrors(t *testing.T) {
	for _, tc := range []struct{ dialect, dsn string }{
		{sqlmirror.Postgres, "postgres://u:s3cret@host:notaport/db"},
		{sqlmirror.MySQL, "u:s3cret@tcp(host/db?badparam"},
		{sqlmirror.Phoenix, "://u:s3cret@"},
	} {
		c := sqlmirror.DefaultConfig()
		c.Name, c.Dialect, c.DSN = "m", tc.dialect, tc.dsn
		_, err := sqlmirror.New(c, nil)
		if err == nil {
			t.Errorf("%s: New accepted %q", tc.dialect, tc.dsn)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "dsn") {
			t.Errorf("%s: %v: must name the dsn field and never quote it", tc.dialect, err)
		}
	}
}
