package shard

import (
	"bytes"
	"context"
	"io"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger routes hashicorp/raft's hclog output to slog, keeping levels.
func newHCLogger(l *slog.Logger) hclog.Logger {
	if !l.Enabled(context.Background(), slog.LevelError) {
		return hclog.NewNullLogger()
	}
	level := hclog.Warn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	} else if l.Enabled(context.Background(), slog.LevelInfo) {
		level = hclog.Info
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:            "raft",
		Level:           level,
		Output:          slogWriter{l},
		DisableTime:     true,
		IncludeLocation: false,
	})
}

type slogWriter struct{ l *slog.Logger }

var _ io.Writer = slogWriter{}

func (w slogWriter) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := slog.LevelInfo
	switch {
	case bytes.HasPrefix(line, []byte("[ERROR]")):
		level = slog.LevelError
	case bytes.HasPrefix(line, []byte("[WARN]")):
		level = slog.LevelWarn
	case bytes.HasPrefix(line, []byte("[DEBUG]")), bytes.HasPrefix(line, []byte("[TRACE]")):
		level = slog.LevelDebug
	}
	if i := bytes.IndexByte(line, ']'); i >= 0 {
		line = bytes.TrimSpace(line[i+1:])
	}
	w.l.Log(context.Background(), level, string(line), "component", "raft")
	return len(p), nil
}
