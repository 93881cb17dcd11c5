package config

import (
	"fmt"
	"io"
	"log/slog"
	"os"
)

// Load reads and parses the file at path (see Parse); lookup resolves ${NAME}
// (cmd/kanal passes os.LookupEnv). Errors start with the path.
func Load(path string, lookup func(string) (string, bool)) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(data, lookup)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Logger returns the logger the log section asks for, writing to w. An
// unknown level (Validate refuses those) logs at info.
func (l LogConfig) Logger(w io.Writer) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
