package producer

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	gomysql "github.com/go-sql-driver/mysql"

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
	connector, err := gomysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cfg.Addr, err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(2)
	return db, nil
}

// checkServer refuses a server whose binlog settings would lose or mislabel data.
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
	want := []struct{ name, value, why string }{
		{"log_bin", "1", "enable the binary log (log_bin / --log-bin)"},
		{"binlog_format", "ROW", "set binlog_format=ROW"},
		{"binlog_row_image", "FULL", "set binlog_row_image=FULL (kanal needs every column before and after)"},
		{"binlog_row_metadata", "FULL", "set binlog_row_metadata=FULL (column names and primary keys come from the binlog, not the live schema)"},
	}
	for _, w := range want {
		var got sql.NullString
		err := db.QueryRowContext(ctx, "SELECT @@GLOBAL."+w.name).Scan(&got)
		if err != nil {
			var me *gomysql.MySQLError
			if errors.As(err, &me) && me.Number == 1193 { // unknown system variable
				return nil, fmt.Errorf("%w: %s (version %s) has no %s variable; kanal needs MySQL 8.0.1+ or MariaDB 10.5+: %s",
					ErrServerConfig, cfg.Addr, version, w.name, w.why)
			}
			return nil, fmt.Errorf("source %s: read @@%s: %w", cfg.Addr, w.name, err)
		}
		v := strings.ToUpper(got.String)
		if v == "ON" {
			v = "1"
		}
		if v != w.value {
			return nil, fmt.Errorf("%w: %s has %s=%s; %s", ErrServerConfig, cfg.Addr, w.name, got.String, w.why)
		}
	}
	if info.flavor == "mysql" {
		// MySQL 8.0.20+ can compress whole transactions into one payload event,
		// which the producer refuses at runtime (see session.handle): refuse the
		// server up front instead.
		var comp sql.NullString
		err := db.QueryRowContext(ctx, "SELECT @@GLOBAL.binlog_transaction_compression").Scan(&comp)
		var me *gomysql.MySQLError
		switch {
		case errors.As(err, &me) && me.Number == 1193: // older server: no such variable
		case err != nil:
			return nil, fmt.Errorf("source %s: read @@binlog_transaction_compression: %w", cfg.Addr, err)
		case strings.EqualFold(comp.String, "ON") || comp.String == "1":
			return nil, fmt.Errorf("%w: %s has binlog_transaction_compression=ON; set it OFF (kanal does not unpack compressed transaction payloads yet)", ErrServerConfig, cfg.Addr)
		}
	}
	return info, nil
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
	var p schemas.Position
	query := "SHOW MASTER STATUS"
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		// MySQL 8.4 renamed it.
		query = "SHOW BINARY LOG STATUS"
		if rows, err = db.QueryContext(ctx, query); err != nil {
			return p, fmt.Errorf("%s: %w", query, err)
		}
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
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
	rows.Close()
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
