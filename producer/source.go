package producer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/kanal-cdc/kanal/internal/dbconn"
	"github.com/kanal-cdc/kanal/schemas"
)

// serverInfo is what kanal learns about the source before reading its binlog.
type serverInfo struct {
	flavor   string // "mysql" or "mariadb"
	version  string
	serverID uint32
}

// openSQL opens a plain SQL connection to the source for checks and position queries.
// The DSN is built here and never logged: it holds the password.
func openSQL(cfg *SourceConfig) (*sql.DB, error) {
	mc := gomysql.NewConfig()
	mc.User = cfg.User
	mc.Passwd = cfg.Password
	mc.Net = "tcp"
	mc.Addr = cfg.Addr
	mc.Timeout = cfg.ConnectTimeout
	mc.ReadTimeout = cfg.ConnectTimeout
	conn := cfg.conn()
	if err := conn.ApplyMySQL(mc); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	connector, err := conn.MySQLConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(2)
	return db, nil
}

// conn is the source's TLS and password settings, for dbconn.
func (s *SourceConfig) conn() *dbconn.Settings {
	return &dbconn.Settings{TLS: s.TLS, PasswordFile: s.PasswordFile, Field: "source", Server: "source " + s.Addr}
}

// setting is a server variable kanal depends on, and how to fix it.
type setting struct {
	name string
	ok   func(value string) bool
	need string // what kanal needs, as the error says it
	why  string
	fix  string // the SQL and the my.cnf line
	// mysqlOnly: MariaDB has no such variable; optional: a server without it
	// (older than the feature) is fine.
	mysqlOnly, optional bool
}

func is(want ...string) func(string) bool {
	return func(v string) bool {
		for _, w := range want {
			if strings.EqualFold(v, w) {
				return true
			}
		}
		return false
	}
}

// settings are the binlog settings kanal checks before it reads a binlog.
var settings = []setting{
	{name: "log_bin", ok: is("1", "ON"), need: "ON",
		why: "kanal reads the binary log",
		fix: "in my.cnf [mysqld]: log_bin = binlog and server_id = <a unique number>, then restart the server"},
	{name: "binlog_format", ok: is("ROW"), need: "ROW",
		why: "only row events carry the changed rows; STATEMENT and MIXED log SQL text",
		fix: "SET GLOBAL binlog_format = 'ROW', and in my.cnf [mysqld]: binlog_format = ROW " +
			"(open sessions keep their own value: reconnect the applications)"},
	{name: "binlog_row_image", ok: is("FULL"), need: "FULL",
		why: "MINIMAL and NOBLOB leave columns out of the row images, but every change record, its key and " +
			"every handler (Redis rows, aggregates, mirrors) need the whole row before and after the change",
		fix: "SET GLOBAL binlog_row_image = 'FULL', and in my.cnf [mysqld]: binlog_row_image = FULL"},
	{name: "binlog_row_metadata", ok: is("FULL"), need: "FULL",
		why: "column names, primary keys and character sets come from the binlog, not the live schema",
		fix: "SET GLOBAL binlog_row_metadata = 'FULL', and in my.cnf [mysqld]: binlog_row_metadata = FULL"},
	{name: "binlog_row_value_options", ok: is(""), need: "'' (empty)", mysqlOnly: true, optional: true,
		why: "PARTIAL_JSON logs only the changed parts of a JSON document in updates, and kanal writes whole values",
		fix: "SET GLOBAL binlog_row_value_options = '', and in my.cnf [mysqld]: binlog_row_value_options = \"\""},
}

// unknownVariable is the server's error for a system variable it does not have.
const unknownVariable = 1193

// checkServer refuses a server whose binlog settings would lose or mislabel
// data, or whose user may not read the binlog; each error says what is set,
// what kanal needs, and the SQL or my.cnf line that fixes it.
func checkServer(ctx context.Context, db *sql.DB, cfg *SourceConfig) (*serverInfo, error) {
	var version string
	var serverID uint32
	if err := db.QueryRowContext(ctx, "SELECT @@version, @@server_id").Scan(&version, &serverID); err != nil {
		return nil, fmt.Errorf("source %s: connect and query version: %w", cfg.Addr, err)
	}
	info := &serverInfo{version: version, serverID: serverID, flavor: "mysql"}
	if strings.Contains(strings.ToLower(version), "mariadb") {
		info.flavor = "mariadb"
	}
	if cfg.Flavor != "auto" && cfg.Flavor != info.flavor {
		return nil, fmt.Errorf("%w: source.flavor is %s but %s reports version %s", ErrServerConfig, cfg.Flavor, cfg.Addr, version)
	}
	for _, w := range settings {
		if w.mysqlOnly && info.flavor != "mysql" {
			continue
		}
		got, err := globalVariable(ctx, db, w.name)
		var me *gomysql.MySQLError
		switch {
		case errors.As(err, &me) && me.Number == unknownVariable && w.optional:
			continue
		case errors.As(err, &me) && me.Number == unknownVariable:
			return nil, fmt.Errorf("%w: %s (version %s) has no %s variable; kanal needs MySQL 8.0.1+ or MariaDB 10.5+ with %s=%s (%s)",
				ErrServerConfig, cfg.Addr, version, w.name, w.name, w.need, w.why)
		case err != nil:
			return nil, fmt.Errorf("source %s: read @@%s: %w", cfg.Addr, w.name, err)
		}
		if !w.ok(got) {
			return nil, fmt.Errorf("%w: %s has %s=%s; kanal needs %s: %s. Fix: %s",
				ErrServerConfig, cfg.Addr, w.name, shown(got), w.need, w.why, w.fix)
		}
	}
	if err := checkPrivileges(ctx, db, cfg); err != nil {
		return nil, err
	}
	return info, nil
}

func globalVariable(ctx context.Context, db *sql.DB, name string) (string, error) {
	var v sql.NullString
	err := db.QueryRowContext(ctx, "SELECT @@GLOBAL."+name).Scan(&v)
	return v.String, err
}

func shown(v string) string {
	if v == "" {
		return "''"
	}
	return v
}

// checkPrivileges checks that the user may list the binlogs (REPLICATION
// CLIENT, on MariaDB 10.5+ BINLOG MONITOR) and holds REPLICATION SLAVE on *.*
// (the binlog dump), unless its privileges come through roles, which are not
// followed (the dump then fails with the server's own error). kanal reads no
// table, so it needs no SELECT.
func checkPrivileges(ctx context.Context, db *sql.DB, cfg *SourceConfig) error {
	account := "'" + cfg.User + "'@'%'"
	var cur string
	if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&cur); err == nil {
		if at := strings.LastIndexByte(cur, '@'); at >= 0 { // "user@host"; a user name may hold '@'
			account = "'" + cur[:at] + "'@'" + cur[at+1:] + "'"
		}
	}
	if _, err := binlogFiles(ctx, db); err != nil {
		var me *gomysql.MySQLError
		if errors.As(err, &me) && (me.Number == 1227 || me.Number == 1142 || me.Number == 1044) { // access denied
			return fmt.Errorf("%w: user %s on %s lacks REPLICATION CLIENT (on MariaDB 10.5+: BINLOG MONITOR), which lists the binlogs: "+
				"GRANT REPLICATION CLIENT ON *.* TO %s (MariaDB: GRANT BINLOG MONITOR ON *.* TO %s): %w", ErrServerConfig, cfg.User, cfg.Addr, account, account, err)
		}
		return fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return fmt.Errorf("source %s: SHOW GRANTS: %w", cfg.Addr, err)
	}
	defer rows.Close()
	replication, roles := false, false
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return fmt.Errorf("source %s: SHOW GRANTS: %w", cfg.Addr, err)
		}
		g = strings.ToUpper(g)
		on, _, isPriv := strings.Cut(g, " TO ")
		switch {
		case !isPriv:
		case !strings.Contains(on, " ON "):
			roles = true // "GRANT role TO user"
		case strings.Contains(on, " ON *.*") &&
			(strings.Contains(on, "ALL PRIVILEGES") || strings.Contains(on, "REPLICATION SLAVE") || strings.Contains(on, "REPLICATION REPLICA")):
			replication = true
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("source %s: SHOW GRANTS: %w", cfg.Addr, err)
	}
	if !replication && !roles {
		return fmt.Errorf("%w: user %s on %s lacks REPLICATION SLAVE, which reads the binlog: GRANT REPLICATION SLAVE ON *.* TO %s",
			ErrServerConfig, cfg.User, cfg.Addr, account)
	}
	return nil
}

// binlogFiles lists the binlog files the server still has, oldest first.
func binlogFiles(ctx context.Context, db *sql.DB) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINARY LOGS")
	if err != nil {
		return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var files []string
	for rows.Next() {
		vals := make([]any, len(cols))
		var name string
		vals[0] = &name
		for i := 1; i < len(cols); i++ {
			vals[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(vals...); err != nil {
			return nil, fmt.Errorf("SHOW BINARY LOGS: %w", err)
		}
		files = append(files, name)
	}
	return files, rows.Err()
}

// currentPosition returns the server's current binlog position and executed GTID set.
func currentPosition(ctx context.Context, db *sql.DB, flavor string) (schemas.Position, error) {
	p, err := binlogStatus(ctx, db)
	if err != nil {
		return p, err
	}
	gtidVar := "@@GLOBAL.gtid_executed"
	if flavor == "mariadb" {
		gtidVar = "@@GLOBAL.gtid_binlog_pos"
	}
	var gtid sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT "+gtidVar).Scan(&gtid); err == nil {
		p.GTIDSet = strings.ReplaceAll(gtid.String, "\n", "")
	}
	return p, nil
}

// queryer is what *sql.DB and *sql.Conn share.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// binlogStatus returns the end of the server's binlog: SHOW MASTER STATUS, or
// SHOW BINARY LOG STATUS on MySQL 8.4+, which removed the former.
func binlogStatus(ctx context.Context, q queryer) (schemas.Position, error) {
	p, err := binlogStatusBy(ctx, q, showMasterStatus)
	if err != nil && !errors.Is(err, ErrServerConfig) { // the statement is unknown, not the binlog off
		return binlogStatusBy(ctx, q, showBinaryLogStatus)
	}
	return p, err
}

const (
	showMasterStatus    = "SHOW MASTER STATUS"
	showBinaryLogStatus = "SHOW BINARY LOG STATUS"
)

// binlogStatusBy returns the end of the server's binlog as query (one of the
// two above) reports it.
func binlogStatusBy(ctx context.Context, q queryer, query string) (schemas.Position, error) {
	var p schemas.Position
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return p, fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return p, fmt.Errorf("%s: %w", query, err)
		}
		return p, fmt.Errorf("%w: %s returned nothing: is the binary log enabled?", ErrServerConfig, query)
	}
	vals := make([]any, len(cols))
	vals[0], vals[1] = &p.File, &p.Pos
	for i := 2; i < len(cols); i++ {
		vals[i] = new(sql.NullString)
	}
	if err := rows.Scan(vals...); err != nil {
		return p, fmt.Errorf("%s: %w", query, err)
	}
	return p, rows.Close()
}

// warnUnmatchedIncludes warns about each tables.include pattern that matches no
// table on the source: usually a typo, which would otherwise capture nothing
// without a word. Tables created later are still captured when they match.
func (p *Producer) warnUnmatchedIncludes(ctx context.Context, db *sql.DB) {
	if len(p.cfg.Tables.Include) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Source.ConnectTimeout)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES
		WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')`)
	if err != nil {
		p.log.Warn("cannot list the source's tables to check tables.include", "err", err)
		return
	}
	defer rows.Close()
	matched := make([]bool, len(p.cfg.Tables.Include))
	for rows.Next() {
		var schema, table string
		if err := rows.Scan(&schema, &table); err != nil {
			p.log.Warn("cannot list the source's tables to check tables.include", "err", err)
			return
		}
		for i, pat := range p.cfg.Tables.Include {
			if ok, _ := path.Match(pat, schema+"."+table); ok {
				matched[i] = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		p.log.Warn("cannot list the source's tables to check tables.include", "err", err)
		return
	}
	for i, pat := range p.cfg.Tables.Include {
		if !matched[i] {
			p.log.Warn(fmt.Sprintf("tables.include pattern %q matches no table on the source", pat), "pattern", pat,
				"hint", "patterns are case-sensitive db.table globs (shop.*); a table created later that matches is captured")
		}
	}
}
