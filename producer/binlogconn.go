package producer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// replicaConn is one replication connection to the source: what go-mysql's
// BinlogSyncer sets up (the same handshake, session variables, COM_REGISTER_SLAVE
// and COM_BINLOG_DUMP, with the same BinlogSyncerConfig), after which the
// stream's packets are read by binlogStream straight from the connection into its
// own reused buffers. BinlogSyncer copies each packet out of a pooled buffer into a
// fresh slice and parses it into fresh structs, four to six allocations per event
// and three quarters of the producer's (docs/bench.md).
type replicaConn struct {
	cfg *replication.BinlogSyncerConfig
	c   *client.Conn
	// raw is what the stream's packets are read from: the connection under
	// go-mysql's packet layer (TLS included), whose read buffer is empty once
	// the dump command is sent (the server answers nothing else first).
	raw net.Conn
	id  uint32
}

// dialReplica connects as a replica.
func dialReplica(ctx context.Context, cfg *replication.BinlogSyncerConfig) (*replicaConn, error) {
	r := &replicaConn{cfg: cfg}
	dialer := cfg.Dialer
	if dialer == nil {
		dialer = (&net.Dialer{}).DialContext
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.ConnectWithDialer(cctx, "", addr, cfg.User, cfg.Password, "", dialer, func(c *client.Conn) error {
		c.SetTLSConfig(cfg.TLSConfig)
		c.SetAttributes(map[string]string{"_client_role": "binary_log_listener"})
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.c, r.id = c, c.GetConnectionID()
	if err := r.register(); err != nil {
		c.Close()
		return nil, err
	}
	if c.Compression != mysql.MYSQL_COMPRESS_NONE {
		c.Close()
		return nil, fmt.Errorf("binlog connection: protocol compression is not supported")
	}
	r.raw = c.Conn.Conn
	return r, nil
}

// register sets the session variables a replica sets and registers as one, as
// BinlogSyncer.registerSlave does.
func (r *replicaConn) register() error {
	c, cfg := r.c, r.cfg
	res, err := c.Execute("SHOW GLOBAL VARIABLES LIKE 'BINLOG_CHECKSUM'")
	if err != nil {
		return err
	}
	if s, _ := res.GetString(0, 1); s != "" {
		// Checksum-aware: events come as the binlog holds them, and the format
		// description says whether they end with a CRC32.
		if _, err := c.Execute(`SET @master_binlog_checksum='NONE', @source_binlog_checksum='NONE'`); err != nil {
			return err
		}
	}
	if cfg.Flavor == mysql.MariaDBFlavor {
		// MARIA_SLAVE_CAPABILITY_GTID: GTID events instead of BEGIN queries.
		if _, err := c.Execute("SET @mariadb_slave_capability=4"); err != nil {
			return fmt.Errorf("set @mariadb_slave_capability=4: %w", err)
		}
	}
	if cfg.HeartbeatPeriod > 0 {
		if _, err := c.Execute(fmt.Sprintf("SET @master_heartbeat_period = %d, @source_heartbeat_period = %d",
			cfg.HeartbeatPeriod, cfg.HeartbeatPeriod)); err != nil {
			return fmt.Errorf("set the heartbeat period: %w", err)
		}
	}
	uuid, err := newUUID()
	if err != nil {
		return err
	}
	if _, err := c.Execute(fmt.Sprintf("SET @slave_uuid = '%s', @replica_uuid = '%s'", uuid, uuid)); err != nil {
		return err
	}
	host := cfg.Localhost
	if host == "" {
		host, _ = os.Hostname()
	}
	if len(host) > 255 {
		host = host[:255]
	}
	user := cfg.User
	if len(user) > 255 {
		user = user[:255]
	}
	// COM_REGISTER_SLAVE: server id, hostname, user, password (empty), port,
	// replication rank, master id.
	data := make([]byte, 4, 4+1+4+1+len(host)+1+len(user)+1+2+4+4)
	data = append(data, mysql.COM_REGISTER_SLAVE)
	data = binary.LittleEndian.AppendUint32(data, cfg.ServerID)
	data = append(append(data, byte(len(host))), host...)
	data = append(append(data, byte(len(user))), user...)
	data = append(data, 0)
	data = binary.LittleEndian.AppendUint16(data, cfg.Port)
	data = binary.LittleEndian.AppendUint32(data, 0)
	data = binary.LittleEndian.AppendUint32(data, 0)
	c.ResetSequence()
	if err := c.WritePacket(data); err != nil {
		return err
	}
	_, err = c.ReadOKPacket()
	return err
}

// dump sends COM_BINLOG_DUMP for pos; the stream's packets follow, numbered
// from 1.
func (r *replicaConn) dump(pos mysql.Position) error {
	if pos.Pos < 4 {
		pos.Pos = 4
	}
	data := make([]byte, 4, 4+1+4+2+4+len(pos.Name))
	data = append(data, mysql.COM_BINLOG_DUMP)
	data = binary.LittleEndian.AppendUint32(data, pos.Pos)
	data = binary.LittleEndian.AppendUint16(data, r.cfg.DumpCommandFlag)
	data = binary.LittleEndian.AppendUint32(data, r.cfg.ServerID)
	data = append(data, pos.Name...)
	r.c.ResetSequence()
	return r.c.WritePacket(data)
}

// close closes the connection and then ends its dump thread on the server from a
// second connection (as BinlogSyncer does): a closed socket alone is noticed by
// the server only when it next writes to it.
func (r *replicaConn) close(log *slog.Logger) {
	r.c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := net.JoinHostPort(r.cfg.Host, strconv.Itoa(int(r.cfg.Port)))
	dial := r.cfg.Dialer
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	k, err := client.ConnectWithDialer(ctx, "", addr, r.cfg.User, r.cfg.Password, "", dial, func(c *client.Conn) error {
		c.SetTLSConfig(r.cfg.TLSConfig)
		return nil
	})
	if err != nil {
		log.Debug("end the binlog dump thread: connect", "err", err)
		return
	}
	defer k.Close()
	if _, err := k.Execute(fmt.Sprintf("KILL %d", r.id)); err != nil && mysql.ErrorCode(err.Error()) != mysql.ER_NO_SUCH_THREAD {
		log.Debug("end the binlog dump thread", "id", r.id, "err", err)
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}
