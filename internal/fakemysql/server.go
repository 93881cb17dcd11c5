// Package fakemysql is a MySQL 8 source for tests on machines where MySQL 8
// cannot run: a server speaking MySQL's client and replication protocol
// (go-mysql's server package) that answers the queries kanal's producer sends
// from the variables, grants and binlog files a test sets, and streams the
// binlog events a test builds with Binlog, laid out as MySQL 8.0 writes them.
// It is not a database: it knows no tables and runs no SQL.
package fakemysql

import (
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-mysql-org/go-mysql/server"
	gomysql "github.com/go-sql-driver/mysql"
)

// Server is a fake MySQL 8.0 source.
type Server struct {
	Addr           string
	User, Password string

	mu sync.Mutex
	// vars are the values of SELECT @@GLOBAL.<name> (and @@<name>); a
	// variable that is missing is unknown to the server.
	vars   map[string]string
	grants []string
	// collations are the ids information_schema.COLLATIONS answers for.
	collations map[uint64]string
	binlog     *Binlog
	streams    []*replication.BinlogStreamer
	conns      []net.Conn
	ln         net.Listener
}

// Start starts a server on 127.0.0.1 with a MySQL 8 that kanal accepts
// (ROW, FULL, FULL, log_bin ON) and one binlog file with no transactions; it
// stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr: ln.Addr().String(), User: "kanal", Password: "fake-Secret-8", ln: ln,
		vars: map[string]string{
			"version": ServerVersion, "server_id": "1", "log_bin": "1", "binlog_format": "ROW",
			"binlog_row_image": "FULL", "binlog_row_metadata": "FULL", "binlog_row_value_options": "",
			"binlog_transaction_compression": "OFF", "gtid_mode": "OFF",
		},
		grants: []string{"GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO `kanal`@`%`"},
		binlog: NewBinlog("binlog.000001", 1),
	}
	srv := server.NewServer(ServerVersion, mysql.DEFAULT_COLLATION_ID, mysql.AUTH_NATIVE_PASSWORD, nil, nil)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(srv, c)
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *Server) serve(srv *server.Server, c net.Conn) {
	auth := server.NewInMemoryAuthenticationHandler(mysql.AUTH_NATIVE_PASSWORD)
	if err := auth.AddUser(s.User, s.Password); err != nil {
		c.Close()
		return
	}
	conn, err := srv.NewCustomizedConn(c, auth, &handler{s: s})
	if err != nil {
		c.Close()
		return
	}
	for {
		if err := conn.HandleCommand(); err != nil {
			return
		}
	}
}

var errStopped = errors.New("fake server stopped")

func (s *Server) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.streams {
		st.AddErrorToStreamer(errStopped)
	}
	for _, c := range s.conns {
		c.Close()
	}
}

// SetVar sets a global variable; "" with unknown removes it (the server then
// has no such variable).
func (s *Server) SetVar(name, value string, unknown bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if unknown {
		delete(s.vars, name)
		return
	}
	s.vars[name] = value
}

// SetCollation makes information_schema.COLLATIONS list collation id of
// character set cs.
func (s *Server) SetCollation(id uint64, cs string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.collations == nil {
		s.collations = map[uint64]string{}
	}
	s.collations[id] = cs
}

// SetGrants sets what SHOW GRANTS answers.
func (s *Server) SetGrants(grants ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.grants = grants
}

// Binlog is the server's binlog file, for building events (Binlog.Query,
// Binlog.TableMap, …); Append writes them.
func (s *Server) Binlog() *Binlog { return s.binlog }

// Append adds events to the binlog and streams them to the dumps under way.
func (s *Server) Append(events ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.binlog.Events)
	s.binlog.Add(events...)
	for _, st := range s.streams {
		for _, ev := range s.binlog.Events[n:] {
			_ = st.AddEventToStreamer(&replication.BinlogEvent{RawData: ev})
		}
	}
}

// DB is a client of the server (for the queries tests make of a source, such
// as SHOW MASTER STATUS); it is closed when the test ends.
func (s *Server) DB(t testing.TB) *sql.DB {
	t.Helper()
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = s.User, s.Password, "tcp", s.Addr
	c, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// End is the binlog position after the last event.
func (s *Server) End() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.binlog.Pos()
}

type handler struct {
	server.EmptyReplicationHandler
	s *Server
}

func (h *handler) UseDB(string) error { return nil }

func result(names []string, rows ...[]any) (*mysql.Result, error) {
	rs, err := mysql.BuildSimpleTextResultset(names, rows)
	if err != nil {
		return nil, err
	}
	return &mysql.Result{Resultset: rs}, nil
}

// HandleQuery answers the queries of kanal's producer and of go-mysql's
// binlog syncer.
func (h *handler) HandleQuery(query string) (*mysql.Result, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	q := strings.TrimSpace(query)
	upper := strings.ToUpper(q)
	switch {
	case upper == "SELECT @@VERSION, @@SERVER_ID":
		return result([]string{"@@version", "@@server_id"}, []any{s.vars["version"], s.vars["server_id"]})
	case strings.HasPrefix(upper, "SELECT @@GLOBAL.") && !strings.ContainsAny(q[len("SELECT @@GLOBAL."):], " ,"):
		name := strings.ToLower(q[len("SELECT @@GLOBAL."):])
		v, ok := s.vars[name]
		if !ok {
			return nil, mysql.NewError(1193, fmt.Sprintf("Unknown system variable '%s'", name))
		}
		return result([]string{q[len("SELECT "):]}, []any{v})
	case upper == "SELECT CURRENT_USER()":
		return result([]string{"CURRENT_USER()"}, []any{s.User + "@%"})
	case upper == "SHOW BINARY LOGS":
		return result([]string{"Log_name", "File_size", "Encrypted"}, []any{s.binlog.File, uint64(s.binlog.Pos()), "No"})
	case upper == "SHOW MASTER STATUS" || upper == "SHOW BINARY LOG STATUS":
		return result([]string{"File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB", "Executed_Gtid_Set"},
			[]any{s.binlog.File, uint64(s.binlog.Pos()), "", "", ""})
	case strings.HasPrefix(upper, "SHOW STATUS LIKE 'BINLOG_SNAPSHOT_"):
		// MySQL has no binlog position of a consistent snapshot.
		return result([]string{"Variable_name", "Value"})
	case upper == "SHOW GRANTS":
		var rows [][]any
		for _, g := range s.grants {
			rows = append(rows, []any{g})
		}
		if len(rows) == 0 {
			rows = append(rows, []any{"GRANT USAGE ON *.* TO `" + s.User + "`@`%`"})
		}
		return result([]string{"Grants for " + s.User + "@%"}, rows...)
	case strings.HasPrefix(upper, "SHOW GLOBAL VARIABLES LIKE 'BINLOG_CHECKSUM'"):
		// No checksums: the events carry none (the format description says so).
		return result([]string{"Variable_name", "Value"})
	case strings.HasPrefix(upper, "SET ") || strings.HasPrefix(upper, "KILL "):
		return nil, nil
	case strings.HasPrefix(upper, "SELECT CHARACTER_SET_NAME FROM INFORMATION_SCHEMA.COLLATIONS WHERE ID = "):
		var id uint64
		fmt.Sscan(q[len("SELECT CHARACTER_SET_NAME FROM INFORMATION_SCHEMA.COLLATIONS WHERE ID = "):], &id)
		if cs, ok := s.collations[id]; ok {
			return result([]string{"CHARACTER_SET_NAME"}, []any{cs})
		}
		return result([]string{"CHARACTER_SET_NAME"})
	case strings.Contains(upper, "INFORMATION_SCHEMA.COLLATION_CHARACTER_SET_APPLICABILITY WHERE ID"):
		return nil, mysql.NewError(1054, "Unknown column 'ID' in 'where clause'") // MySQL 8 has no such column
	}
	return nil, mysql.NewError(1064, "fake server: unsupported query "+q)
}

// HandleRegisterSlave accepts the replica.
func (h *handler) HandleRegisterSlave([]byte) error { return nil }

// HandleBinlogDump streams the binlog from pos: the rotate and format
// description events a dump starts with, then the events from pos on.
func (h *handler) HandleBinlogDump(pos mysql.Position) (*replication.BinlogStreamer, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := replication.NewBinlogStreamerWithChanSize(4096)
	for i, ev := range s.binlog.Events {
		end := binary.LittleEndian.Uint32(ev[13:])
		if i < 2 || end-uint32(len(ev)) >= pos.Pos {
			if err := st.AddEventToStreamer(&replication.BinlogEvent{RawData: ev}); err != nil {
				return nil, err
			}
		}
	}
	s.streams = append(s.streams, st)
	return st, nil
}
