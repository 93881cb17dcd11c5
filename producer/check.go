package producer

import "context"

// CheckSource connects to the source as cfg's user and checks, without
// reading the binlog, what Run checks before it does: the server's binlog
// settings, that the user may list the binlogs (REPLICATION CLIENT; on MariaDB
// BINLOG MONITOR) and that it holds REPLICATION SLAVE on *.* (the binlog
// dump), unless its privileges come through roles, which are not followed; and
// the backfills' watermark: with the table watermark the server's commit order
// and the table (created if missing, its row written, as Run does), and that
// source.start: snapshot can backfill at all. It returns the server's version.
// Errors never include the password. For `kanal config check --connect`.
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
	if err := checkWatermark(ctx, db, &cfg, cfg.Start == "snapshot"); err != nil {
		return "", err
	}
	return info.version, nil
}
