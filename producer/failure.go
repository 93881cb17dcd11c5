package producer

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gomysql "github.com/go-sql-driver/mysql"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kanal-cdc/kanal/kafkaconn"
)

// How the producer tells failures apart: which server failed (ServerError), whether
// it answered at all (unreachable), and whether a retry can help (access denied is
// permanent). Run logs each retry with what failed and for how long.

// ServerError is a failure talking to one of the producer's servers.
type ServerError struct {
	// Server names it for people: "source 127.0.0.1:3306" or "kafka 127.0.0.1:9092".
	Server string
	Err    error
}

func (e *ServerError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *ServerError) Unwrap() error { return e.Err }

// sourceFailed marks err as the source's. Its messages already name the address.
func sourceFailed(cfg *SourceConfig, err error) error {
	if err == nil {
		return nil
	}
	var se *ServerError
	if errors.As(err, &se) {
		return err
	}
	return &ServerError{Server: "source " + cfg.Addr, Err: err}
}

// kafkaFailed marks err as Kafka's and names the brokers in its message.
func kafkaFailed(cfg *kafkaconn.Config, err error) error {
	if err == nil {
		return nil
	}
	var se *ServerError
	if errors.As(err, &se) {
		return err
	}
	server := "kafka " + strings.Join(cfg.Brokers, ",")
	return &ServerError{Server: server, Err: fmt.Errorf("%s: %w", server, err)}
}

// mysqlAccessDenied are the server errors that mean the user may not do what kanal
// needs: wrong password, unknown user or host, missing privileges, locked or
// expired accounts. Retrying cannot fix them.
var mysqlAccessDenied = map[uint16]bool{
	1044: true, // ER_DBACCESS_DENIED_ERROR
	1045: true, // ER_ACCESS_DENIED_ERROR (wrong password, unknown user)
	1130: true, // ER_HOST_NOT_PRIVILEGED
	1142: true, // ER_TABLEACCESS_DENIED_ERROR
	1143: true, // ER_COLUMNACCESS_DENIED_ERROR
	1227: true, // ER_SPECIFIC_ACCESS_DENIED_ERROR (REPLICATION SLAVE/CLIENT, BINLOG MONITOR)
	1251: true, // ER_NOT_SUPPORTED_AUTH_MODE
	1698: true, // ER_ACCESS_DENIED_NO_PASSWORD_ERROR
	1820: true, // ER_MUST_CHANGE_PASSWORD
	1862: true, // ER_MUST_CHANGE_PASSWORD_LOGIN
	3118: true, // ER_ACCOUNT_HAS_BEEN_LOCKED (MySQL)
	4151: true, // ER_ACCOUNT_HAS_BEEN_LOCKED (MariaDB)
}

// kafkaAccessDenied are Kafka's authentication and authorization errors.
var kafkaAccessDenied = []error{
	kerr.SaslAuthenticationFailed, kerr.UnsupportedSaslMechanism, kerr.IllegalSaslState,
	kerr.TopicAuthorizationFailed, kerr.GroupAuthorizationFailed, kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed, kerr.DelegationTokenAuthorizationFailed,
}

// accessDenied reports authentication and permission errors of either server.
func accessDenied(err error) bool {
	var de *gomysql.MySQLError
	if errors.As(err, &de) && mysqlAccessDenied[de.Number] {
		return true
	}
	var me *mysql.MyError
	if errors.As(err, &me) && mysqlAccessDenied[me.Code] {
		return true
	}
	for _, k := range kafkaAccessDenied {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

// classify marks access errors with ErrAccess (permanent), keeping the
// server's message.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrAccess) || !accessDenied(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrAccess, err)
}

// unreachable reports failures to reach a server at all (refused, reset, timed
// out, closed), as opposed to a server that answered with an error.
func unreachable(err error) bool {
	var oe *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &oe), errors.As(err, &dnsErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, gomysql.ErrInvalidConn), errors.Is(err, driver.ErrBadConn):
		return true
	}
	// Some client errors keep only the text of the network error.
	msg := err.Error()
	for _, s := range []string{"unable to dial", "connection refused", "connection reset", "i/o timeout", "broken pipe", "no such host", ": EOF"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// retryMessage is Run's log line for a failed attempt: what failed, how, for how
// long, and when the next attempt is.
func (b *brokerWatch) retryMessage(err error, down, wait time.Duration) (string, []any) {
	server := "capture"
	var se *ServerError
	if errors.As(err, &se) {
		server = se.Server
	}
	var hint []any
	if h := b.hintFor(err); h != "" && strings.HasPrefix(server, "kafka ") && unreachable(err) {
		hint = []any{"hint", h}
	}
	state := "failing"
	if unreachable(err) {
		state = "unreachable"
	}
	msg := fmt.Sprintf("%s %s for %s; retrying in %s from the last committed position",
		server, state, down.Round(time.Millisecond), wait.Round(time.Millisecond))
	return msg, append([]any{"server", server, "down_for", down.Round(time.Millisecond), "retry_in", wait.Round(time.Millisecond), "err", err}, hint...)
}

// gaveUp is Run's error once source.max_retry_duration has passed.
func gaveUp(err error, down, limit time.Duration) error {
	server := "capture"
	var se *ServerError
	if errors.As(err, &se) {
		server = se.Server
	}
	state := "failing"
	if unreachable(err) {
		state = "unreachable"
	}
	return fmt.Errorf("%w: %s %s for %s (source.max_retry_duration %s): %w", ErrGaveUp, server, state, down.Round(time.Millisecond), limit, err)
}

// brokerWatch logs the Kafka client's connection failures while franz-go retries
// them internally during streaming (a produce or commit waits meanwhile, and would
// otherwise say nothing until it times out): a warning when a broker first fails,
// then one per backoff step (1s, 2s, 4s … 30s) saying for how long, and a line
// when it is back. Before streaming, Run's own retry lines say it. It is a kgo
// hook, shared by the producer's connections.
type brokerWatch struct {
	log  *slog.Logger
	hint string // a likely cause of a closed connection: SASL or TLS configured
	// streaming: a session is reading the binlog, so no retry line of Run's
	// reports Kafka failures.
	streaming atomic.Bool
	mu        sync.Mutex
	down      map[string]*outage
}

type outage struct {
	since, next time.Time
	step        time.Duration
}

func newBrokerWatch(log *slog.Logger, cfg *kafkaconn.Config) *brokerWatch {
	b := &brokerWatch{log: log, down: map[string]*outage{}}
	switch {
	case cfg.SASL != nil && cfg.TLS.Enabled:
		b.hint = "kafka.sasl (" + cfg.SASL.Mechanism + ") and kafka.tls are set: is this listener SASL_SSL?"
	case cfg.SASL != nil:
		b.hint = "kafka.sasl (" + cfg.SASL.Mechanism + ") is set: a listener without SASL closes the connection at once"
	case cfg.TLS.Enabled:
		b.hint = "kafka.tls is set: a listener without TLS fails the handshake"
	}
	return b
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (b *brokerWatch) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	addr := net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.down[addr]
	if err != nil && o == nil && !b.streaming.Load() {
		return
	}
	if err == nil {
		if o != nil {
			delete(b.down, addr)
			b.log.Info("kafka broker "+addr+" reachable again", "broker", addr, "down_for", now.Sub(o.since).Round(time.Millisecond))
		}
		return
	}
	switch {
	case o == nil:
		o = &outage{since: now, step: time.Second}
		b.down[addr] = o
	case now.Before(o.next):
		return
	default:
		o.step = min(2*o.step, 30*time.Second)
	}
	o.next = now.Add(o.step)
	down := now.Sub(o.since).Round(time.Millisecond)
	args := []any{"broker", addr, "down_for", down, "err", err}
	if h := b.hintFor(err); h != "" {
		args = append(args, "hint", h)
	}
	b.log.Warn(fmt.Sprintf("kafka broker %s unreachable for %s; the client keeps retrying", addr, down), args...)
}

// hintFor returns the configuration that likely explains err: SASL or TLS set
// while the connection was closed or failed in its handshake (not refused).
func (b *brokerWatch) hintFor(err error) string {
	if b.hint == "" || errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused") {
		return ""
	}
	return b.hint
}

var _ kgo.HookBrokerConnect = (*brokerWatch)(nil)
