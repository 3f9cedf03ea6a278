package turn

import (
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/logging"
)

// pionLoggerFactory sends pion's logs to hclog. pion's Info level reports
// routine refusals (no permission, unknown channel) and goes to Debug; its
// Debug/Trace chatter to Trace.
type pionLoggerFactory struct{ log hclog.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.Named(scope)}
}

type pionLogger struct{ log hclog.Logger }

func (l pionLogger) Trace(msg string) { l.log.Trace(msg) }
func (l pionLogger) Tracef(format string, args ...any) {
	if l.log.IsTrace() {
		l.log.Trace(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Debug(msg string) { l.log.Trace(msg) }
func (l pionLogger) Debugf(format string, args ...any) {
	if l.log.IsTrace() {
		l.log.Trace(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Info(msg string) { l.log.Debug(msg) }
func (l pionLogger) Infof(format string, args ...any) {
	if l.log.IsDebug() {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}
func (l pionLogger) Warn(msg string) { l.log.Warn(msg) }
func (l pionLogger) Warnf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
func (l pionLogger) Error(msg string) { l.log.Error(msg) }
func (l pionLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}
