package producer

import (
	"net"
	"regexp"
	"time"
)

// HAConfig is the `ha:` section: any number of `kanal produce` processes with
// the same source.name may run, and they elect one active member through the
// Kafka consumer group "kanal-producer-<source>" (see Leader). The others stand
// by without a binlog connection and take over when the active one stops or
// dies.
type HAConfig struct {
	// Enabled joins the election. Off, the process captures at once and
	// another process with the same source name fences it (it then stops with
	// an error), as before high availability existed.
	Enabled bool `yaml:"enabled"`
	// SessionTimeout is how long the group waits for an active member that
	// stopped heartbeating (killed, frozen, cut off) before a standby takes
	// over. It must lie within the brokers' group.min.session.timeout.ms and
	// group.max.session.timeout.ms (Kafka's defaults: 6s and 30m).
	//
	// The group's rebalance timeout is twice this: how long a rebalance waits
	// for members to rejoin, which bounds the wait for members that died in the
	// middle of one (a producer restarted quickly after crashes), and the time
	// an active member has to hand over cleanly before the group drops it
	// (fencing keeps a slow one from writing after that).
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// HeartbeatInterval is how often each member heartbeats to the group
	// coordinator: standbys learn of a departed active member within it, so it
	// bounds the hand-over after a clean stop. At most a third of
	// session_timeout.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// Instance names this process in the group (its client id), in `kanal
	// status` and in status records; empty means "<host name>-<process id>".
	Instance string `yaml:"instance"`
}

// DefaultHAConfig returns the ha section's defaults: enabled, with a session
// timeout of 6s (Kafka's smallest by default), so that a standby takes over
// within about 8s of the active process dying.
func DefaultHAConfig() HAConfig {
	return HAConfig{Enabled: true, SessionTimeout: 6 * time.Second, HeartbeatInterval: 500 * time.Millisecond}
}

var instanceRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{0,200}$`)

// Validate checks the ha section, naming the bad field.
func (h *HAConfig) Validate() error {
	switch {
	case h.SessionTimeout < time.Second:
		return bad("ha.session_timeout", "must be >= 1s")
	case h.HeartbeatInterval < 10*time.Millisecond:
		return bad("ha.heartbeat_interval", "must be >= 10ms")
	case h.HeartbeatInterval*3 > h.SessionTimeout:
		return bad("ha.heartbeat_interval", "%v is more than a third of ha.session_timeout (%v)", h.HeartbeatInterval, h.SessionTimeout)
	case !instanceRE.MatchString(h.Instance):
		return bad("ha.instance", "%q must be up to 200 letters, digits, '.', '_', ':' or '-'", h.Instance)
	}
	return nil
}

// AdminConfig is the `admin:` section: what the producer tells operators, over
// HTTP, in status records and in its log.
type AdminConfig struct {
	// Listen is the host:port of the HTTP server with /metrics, /healthz and
	// /readyz; empty (the default) serves nothing. Without a host (":9465") it
	// listens on 127.0.0.1 only; to be reached from elsewhere (Prometheus,
	// Kubernetes probes) name the interface: "0.0.0.0:9465", or the pod's IP as
	// ${POD_IP}:9465.
	Listen string `yaml:"listen"`
	// StatusInterval is how often the process publishes its status record to
	// "<prefix>._status" for `kanal status` (0 publishes none).
	StatusInterval time.Duration `yaml:"status_interval"`
	// PollInterval is how often the active producer asks the source for its
	// binlog files (SHOW BINARY LOGS): the bytes behind, the lag of an idle
	// source and the retention guard are as fresh as this.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ProgressInterval is how often a progress line (position, rows/s, bytes
	// behind, ETA) is logged while the producer is more than this far behind
	// the source (0 logs none).
	ProgressInterval time.Duration `yaml:"progress_interval"`
	// RetentionWarnFiles: the retention guard warns (log and
	// kanal_binlog_retention_margin_files) when fewer than this many binlog
	// files on the server are older than the one holding the committed
	// position, unless that file is the newest: the server purges oldest
	// files first, and once the committed position's file is gone the source
	// has to be copied afresh.
	RetentionWarnFiles int `yaml:"retention_warn_files"`
}

// DefaultAdminConfig returns the admin section's defaults.
func DefaultAdminConfig() AdminConfig {
	return AdminConfig{StatusInterval: 5 * time.Second, PollInterval: 5 * time.Second,
		ProgressInterval: 10 * time.Second, RetentionWarnFiles: 1}
}

// Validate checks the admin section, naming the bad field.
func (a *AdminConfig) Validate() error {
	if a.Listen != "" {
		if _, _, err := net.SplitHostPort(a.Listen); err != nil {
			return bad("admin.listen", "%q is not host:port", a.Listen)
		}
	}
	switch {
	case a.StatusInterval < 0 || a.StatusInterval > 0 && a.StatusInterval < 100*time.Millisecond:
		return bad("admin.status_interval", "must be 0 (off) or >= 100ms")
	case a.PollInterval < 100*time.Millisecond:
		return bad("admin.poll_interval", "must be >= 100ms")
	case a.ProgressInterval < 0:
		return bad("admin.progress_interval", "must not be negative")
	case a.RetentionWarnFiles < 0:
		return bad("admin.retention_warn_files", "must not be negative")
	}
	return nil
}
