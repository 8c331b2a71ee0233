package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
)

// logFlags choose the log format and level of the long-running commands
// (run, controller). Logs go to standard error.
type logFlags struct {
	format string
	level  string
}

func (f *logFlags) addFlags(fl *pflag.FlagSet) {
	fl.StringVar(&f.format, "log-format", "text", "log line format: text (key=value) or json (one JSON object a line, for log collectors)")
	fl.StringVar(&f.level, "log-level", "info", "least severe level logged: debug, info, warn or error")
}

// logLevels are the values --log-level takes. slog would also parse
// "info+2" and the like; the flag offers the four names people know.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// logger returns the logger the flags describe, writing to w. A logr
// V(n) message is logged at slog level -n, so --log-level debug shows
// V(1) to V(4), which is where controller-runtime and Sluice put their
// detail; each is labelled DEBUG, as a log collector expects one of the
// four names rather than slog's "DEBUG+3".
func (f *logFlags) logger(w io.Writer) (logr.Logger, error) {
	level, ok := logLevels[strings.ToLower(f.level)]
	if !ok {
		return logr.Logger{}, usageError{fmt.Errorf("--log-level %q: must be debug, info, warn or error", f.level)}
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: debugLevelName}
	var h slog.Handler
	switch strings.ToLower(f.format) {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return logr.Logger{}, usageError{fmt.Errorf("--log-format %q: must be text or json", f.format)}
	}
	return logr.FromSlogHandler(h), nil
}

// debugLevelName names every level below info DEBUG.
func debugLevelName(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.LevelKey {
		if l, ok := a.Value.Any().(slog.Level); ok && l < slog.LevelInfo {
			return slog.String(slog.LevelKey, slog.LevelDebug.String())
		}
	}
	return a
}
