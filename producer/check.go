package producer

import (
	"context"
	"fmt"
	"strings"
)

// CheckSource connects to the source as cfg's user and checks, without
// reading the binlog, what Run needs: the server's binlog settings (as Run
// checks them), that the user may list the binlogs (REPLICATION CLIENT; on
// MariaDB BINLOG MONITOR) and that it holds REPLICATION SLAVE on *.* (the
// binlog dump), unless its privileges come through roles, which are not
// followed. It returns the server's version. Errors never include the
// password. For `kanal config check --connect`.
func CheckSource(ctx context.Context, cfg SourceConfig) (version string, err error) {
	db, err := openSQL(&cfg)
	if err != nil {
		return "", err
	}
	defer db.Close()
	info, err := checkServer(ctx, db, &cfg)
	if err != nil {
		return "", err
	}
	if _, err := binlogFiles(ctx, db); err != nil {
		return info.version, fmt.Errorf("source %s: user %s cannot list the binlogs (grant REPLICATION CLIENT, on MariaDB BINLOG MONITOR): %w", cfg.Addr, cfg.User, err)
	}
	rows, err := db.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return info.version, fmt.Errorf("source %s: SHOW GRANTS: %w", cfg.Addr, err)
	}
	defer rows.Close()
	replication, roles := false, false
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return info.version, fmt.Errorf("source %s: SHOW GRANTS: %w", cfg.Addr, err)
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
		return info.version, fmt.Errorf("source %s: SHOW GRANTS: %w", cfg.Addr, err)
	}
	if !replication && !roles {
		return info.version, fmt.Errorf("%w: user %s on %s lacks REPLICATION SLAVE: GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO it",
			ErrServerConfig, cfg.User, cfg.Addr)
	}
	return info.version, nil
}
