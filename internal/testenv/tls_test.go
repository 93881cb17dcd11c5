package testenv

import (
	"context"
	"crypto/tls"
	"database/sql"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// TestTLSServers: each server started with its TLS option refuses a plaintext
// connection and accepts one that trusts the generated CA, so that tests of
// kanal's TLS settings run against servers that really require TLS.
func TestTLSServers(t *testing.T) {
	t.Parallel()
	certs := NewTLSCerts(t)

	t.Run("mariadb", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m := MariaDB(t, WithTLS(certs))
		mysqlPing := func(tc *tls.Config) error {
			mc := m.dsnConfig("")
			mc.TLS = tc
			conn, err := mysql.NewConnector(mc)
			if err != nil {
				return err
			}
			db := sql.OpenDB(conn)
			defer db.Close()
			return db.PingContext(ctx)
		}
		if err := mysqlPing(nil); err == nil {
			t.Error("plaintext connection accepted")
		} else {
			t.Logf("plaintext: %v", err)
		}
		if err := mysqlPing(certs.ClientConfig()); err != nil {
			t.Errorf("TLS connection: %v", err)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		pg := Postgres(t, WithSSL(certs))
		if c, err := pgx.Connect(ctx, "postgres://postgres:"+PostgresPassword+"@"+pg.Addr+"/kanal?sslmode=disable"); err == nil {
			c.Close(ctx)
			t.Error("plaintext connection accepted")
		} else {
			t.Logf("plaintext: %v", err)
		}
		c, err := pgx.Connect(ctx, pg.DSN)
		if err != nil {
			t.Fatalf("TLS connection: %v", err)
		}
		c.Close(ctx)
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r := Redis(t, WithRedisTLS(certs, true), WithRedisUser("app", "app-secret"))
		plain := redis.NewClient(&redis.Options{Addr: r.Addr, Username: "app", Password: "app-secret", MaxRetries: -1})
		defer plain.Close()
		if err := plain.Ping(ctx).Err(); err == nil {
			t.Error("plaintext connection accepted")
		} else {
			t.Logf("plaintext: %v", err)
		}
		o := r.Options()
		o.Password = "wrong"
		wrong := redis.NewClient(o)
		defer wrong.Close()
		if err := wrong.Ping(ctx).Err(); err == nil {
			t.Error("wrong password accepted")
		}
		ok := redis.NewClient(r.Options())
		defer ok.Close()
		if err := ok.Ping(ctx).Err(); err != nil {
			t.Errorf("TLS connection: %v", err)
		}
	})
}
