// Package deploy holds no code: its tests prove what no Docker engine or
// Kubernetes cluster runs here — the top-level docker-compose.yml, the
// container image's Dockerfile and the manifests of deploy/kubernetes — by
// loading them with the tools' own libraries and checking them against
// kanal's configuration loader.
package deploy_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/kanal-cdc/kanal/config"
)

// pinnedImage is an image named with an exact version ("mysql:8.4.6"), never
// "latest" or a bare major.
var pinnedImage = regexp.MustCompile(`^[a-z0-9./_-]+:v?\d+\.\d+(\.\d+)?([.-][A-Za-z0-9.-]+)?$`)

// loadCompose loads docker-compose.yml as `docker compose` does, with every
// profile, from the repository root.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"},
		cli.WithWorkingDirectory(".."), cli.WithProfiles([]string{"*"}), cli.WithResolvedPaths(false),
		// The secrets' files are written by deploy/compose/secrets.sh on the
		// user's machine; they need not exist to load the file.
		cli.WithConsistency(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// TestCompose checks docker-compose.yml: the services, pinned images,
// health checks that gate startup, the source's binlog settings, a
// replicated KRaft Kafka, Redis as docs/redis.md asks, and secrets only as
// files.
func TestCompose(t *testing.T) {
	p := loadCompose(t)
	var names []string
	for n := range p.Services {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"kafka-1", "kafka-2", "kafka-3", "kanal-consume", "kanal-produce", "kanal-produce-standby", "mysql", "postgres", "redis"}
	if !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}

	for _, n := range names {
		s := p.Services[n]
		if s.Build != nil {
			if s.Build.Dockerfile != "deploy/Dockerfile" {
				t.Errorf("%s builds %q, want deploy/Dockerfile", n, s.Build.Dockerfile)
			}
		} else if !pinnedImage.MatchString(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version", n, s.Image)
		}
		if hc := s.HealthCheck; hc == nil || hc.Disable || len(hc.Test) < 2 {
			t.Errorf("%s has no health check", n)
		}
		for dep, d := range s.DependsOn {
			if d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s depends on %s with condition %q, want service_healthy", n, dep, d.Condition)
			}
			if hc := p.Services[dep].HealthCheck; hc == nil || len(hc.Test) < 2 {
				t.Errorf("%s waits for %s to be healthy, which has no health check", n, dep)
			}
		}
		for k, v := range s.Environment {
			// Secrets are files (*_FILE variables, password_file), never values.
			if strings.Contains(k, "PASSWORD") && (!strings.HasSuffix(k, "_FILE") || v == nil || !strings.HasPrefix(*v, "/run/secrets/")) {
				t.Errorf("%s: %s is a password in the environment; use a secret file", n, k)
			}
			if v != nil && strings.HasSuffix(k, "_FILE") && !mountsSecret(s, strings.TrimPrefix(*v, "/run/secrets/")) {
				t.Errorf("%s: %s=%s is not a secret of the service", n, k, *v)
			}
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q, want 127.0.0.1 only", n, port.Target, port.HostIP)
			}
		}
	}

	mysql := p.Services["mysql"]
	for _, flag := range []string{"--log-bin=mysql-bin", "--binlog-format=ROW", "--binlog-row-image=FULL", "--binlog-row-metadata=FULL",
		"--gtid-mode=ON", "--enforce-gtid-consistency=ON"} {
		if !slices.Contains(mysql.Command, flag) {
			t.Errorf("mysql command lacks %s: %v", flag, mysql.Command)
		}
	}
	if !strings.HasPrefix(mysql.Image, "mysql:8.4.") {
		t.Errorf("mysql image %s, want MySQL 8.4", mysql.Image)
	}

	// Kafka: three combined KRaft nodes, each a voter, RF 3, min ISR 2.
	for i, n := range []string{"kafka-1", "kafka-2", "kafka-3"} {
		env := envOf(p.Services[n])
		if env["KAFKA_NODE_ID"] != strconv.Itoa(i+1) || env["KAFKA_PROCESS_ROLES"] != "broker,controller" ||
			env["KAFKA_ADVERTISED_LISTENERS"] != "PLAINTEXT://"+n+":9092" {
			t.Errorf("%s: node %q roles %q advertised %q", n, env["KAFKA_NODE_ID"], env["KAFKA_PROCESS_ROLES"], env["KAFKA_ADVERTISED_LISTENERS"])
		}
		for k, v := range map[string]string{"KAFKA_DEFAULT_REPLICATION_FACTOR": "3", "KAFKA_MIN_INSYNC_REPLICAS": "2",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "3", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "3",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "2"} {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %s", n, k, env[k], v)
			}
		}
		if env["KAFKA_CONTROLLER_QUORUM_VOTERS"] != strings.Join([]string{"1@kafka-1:9093", "2@kafka-2:9093", "3@kafka-3:9093"}, ",") {
			t.Errorf("%s: voters %q", n, env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
		}
		if !strings.HasPrefix(p.Services[n].Image, "apache/kafka:") {
			t.Errorf("%s: image %s, want Apache Kafka", n, p.Services[n].Image)
		}
	}

	redis := strings.Join(p.Services["redis"].Command, " ")
	for _, opt := range []string{"--appendonly yes", "--maxmemory-policy noeviction", "/run/secrets/redis_password"} {
		if !strings.Contains(redis, opt) {
			t.Errorf("redis command lacks %q: %s", opt, redis)
		}
	}

	// The secrets are files deploy/compose/secrets.sh writes.
	script, err := os.ReadFile("compose/secrets.sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, sc := range p.Secrets {
		if want := "./deploy/compose/secrets/" + name; sc.File != want && sc.File != filepath.Join("..", want) {
			t.Errorf("secret %s is %q, want the file %s", name, sc.File, want)
		}
		if !strings.Contains(string(script), name) {
			t.Errorf("deploy/compose/secrets.sh does not write %s", name)
		}
	}
	ignore, err := os.ReadFile("../.gitignore")
	if err != nil || !strings.Contains(string(ignore), "/deploy/compose/secrets/") {
		t.Errorf(".gitignore does not keep deploy/compose/secrets/ out of git")
	}
}

// TestComposeKanalConfig: each kanal service's configuration file loads with
// kanal's own loader, and what it names exists in the compose file: the
// servers and their ports, the account and password of each, the secrets
// mounted into that service, the metrics port its health check asks.
func TestComposeKanalConfig(t *testing.T) {
	p := loadCompose(t)
	mysql, pg := envOf(p.Services["mysql"]), envOf(p.Services["postgres"])
	for _, n := range []string{"kanal-produce", "kanal-produce-standby", "kanal-consume"} {
		s := p.Services[n]
		if len(s.Configs) != 1 || s.Configs[0].Target != "/etc/kanal/kanal.yaml" {
			t.Fatalf("%s: configs %+v, want one at /etc/kanal/kanal.yaml", n, s.Configs)
		}
		if want := []string{"--config", "/etc/kanal/kanal.yaml"}; len(s.Command) != 3 || !slices.Equal(s.Command[1:], want) {
			t.Errorf("%s: command %v", n, s.Command)
		}
		file := p.Configs[s.Configs[0].Source].File
		path := filepath.Join("..", strings.TrimPrefix(file, "./"))
		if filepath.IsAbs(file) {
			path = file
		}
		env := envOf(s)
		// Every ${VAR} of the file must be set by the service.
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Expand(data, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
			t.Errorf("%s: %v", n, err)
		}
		f, err := config.Load(path, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		secretFile := func(what, file string) {
			t.Helper()
			if !strings.HasPrefix(file, "/run/secrets/") || !mountsSecret(s, strings.TrimPrefix(file, "/run/secrets/")) {
				t.Errorf("%s: %s reads %q, which is not a secret of the service", n, what, file)
			}
		}
		for i, b := range f.Kafka.Brokers {
			if want := envOf(p.Services["kafka-"+strconv.Itoa(i+1)])["KAFKA_ADVERTISED_LISTENERS"]; "PLAINTEXT://"+b != want {
				t.Errorf("%s: broker %s is not kafka-%d's advertised %s", n, b, i+1, want)
			}
		}
		if len(f.Kafka.Brokers) != 3 || f.Kafka.ReplicationFactor != 3 {
			t.Errorf("%s: %d brokers, replication factor %d", n, len(f.Kafka.Brokers), f.Kafka.ReplicationFactor)
		}

		if strings.HasPrefix(n, "kanal-produce") {
			if f.Source.Addr != "mysql:3306" || f.Source.User != mysql["MYSQL_USER"] {
				t.Errorf("%s: source %s as %s, want mysql:3306 as %s", n, f.Source.Addr, f.Source.User, mysql["MYSQL_USER"])
			}
			if f.Source.PasswordFile != mysql["MYSQL_PASSWORD_FILE"] {
				t.Errorf("%s: source.password_file %s, but mysql sets the password from %s", n, f.Source.PasswordFile, mysql["MYSQL_PASSWORD_FILE"])
			}
			secretFile("source.password_file", f.Source.PasswordFile)
			// Two producers of one source: active and standby.
			if !f.HA.Enabled {
				t.Errorf("%s: ha is off, so the second producer would fence the first", n)
			}
			if len(s.Profiles) != 0 {
				t.Errorf("%s starts only with profiles %v", n, s.Profiles)
			}
			_, port, err := net.SplitHostPort(f.Admin.Listen)
			if err != nil {
				t.Fatalf("%s: admin.listen %q: %v", n, f.Admin.Listen, err)
			}
			if hc := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+port+"/healthz") {
				t.Errorf("%s: health check %q does not ask /healthz on admin.listen's port %s", n, hc, port)
			}
			for _, dep := range []string{"mysql", "kafka-1", "kafka-2", "kafka-3"} {
				if _, ok := s.DependsOn[dep]; !ok {
					t.Errorf("%s does not wait for %s", n, dep)
				}
			}
			continue
		}

		// kanal consume: the metrics port is published and health-checked.
		_, port, err := net.SplitHostPort(f.Consumers.MetricsAddr)
		if err != nil {
			t.Fatalf("%s: metrics_addr %q: %v", n, f.Consumers.MetricsAddr, err)
		}
		if host, _, _ := net.SplitHostPort(f.Consumers.MetricsAddr); host != "0.0.0.0" {
			t.Errorf("%s: metrics_addr %s is not reachable through the published port", n, f.Consumers.MetricsAddr)
		}
		if len(s.Ports) != 1 || strconv.Itoa(int(s.Ports[0].Target)) != port {
			t.Errorf("%s: publishes %+v, metrics_addr port is %s", n, s.Ports, port)
		}
		if hc := strings.Join(s.HealthCheck.Test, " "); !strings.Contains(hc, "127.0.0.1:"+port+"/healthz") {
			t.Errorf("%s: health check %q does not ask /healthz on port %s", n, hc, port)
		}
		seen := map[string]bool{}
		for i, h := range f.Consumers.Handlers {
			seen[h.Handler] = true
			switch h.Handler {
			case "redis":
				var o struct {
					Instances map[string]struct {
						Addr         string `yaml:"addr"`
						PasswordFile string `yaml:"password_file"`
					} `yaml:"instances"`
				}
				if err := h.Options.Decode(&o); err != nil {
					t.Fatal(err)
				}
				for name, in := range o.Instances {
					if in.Addr != "redis:6379" {
						t.Errorf("%s: redis instance %s at %s, want redis:6379", n, name, in.Addr)
					}
					secretFile("redis password_file", in.PasswordFile)
					if !strings.Contains(strings.Join(p.Services["redis"].Command, " "), in.PasswordFile) {
						t.Errorf("%s: redis instance %s reads %s, but the server reads its password from elsewhere", n, name, in.PasswordFile)
					}
				}
			case "aggregate":
				var o struct {
					Target struct {
						DSN          string `yaml:"dsn"`
						PasswordFile string `yaml:"password_file"`
					} `yaml:"target"`
				}
				if err := h.Options.Decode(&o); err != nil {
					t.Fatal(err)
				}
				u, err := url.Parse(o.Target.DSN)
				if err != nil {
					t.Fatalf("%s: handler %d dsn: %v", n, i, err)
				}
				if u.Host != "postgres:5432" || u.User.Username() != pg["POSTGRES_USER"] || strings.TrimPrefix(u.Path, "/") != pg["POSTGRES_DB"] {
					t.Errorf("%s: aggregate target %s@%s%s, want %s@postgres:5432/%s", n, u.User.Username(), u.Host, u.Path, pg["POSTGRES_USER"], pg["POSTGRES_DB"])
				}
				if _, has := u.User.Password(); has {
					t.Errorf("%s: the aggregate DSN holds a password", n)
				}
				if o.Target.PasswordFile != pg["POSTGRES_PASSWORD_FILE"] {
					t.Errorf("%s: aggregate password_file %s, Postgres takes %s", n, o.Target.PasswordFile, pg["POSTGRES_PASSWORD_FILE"])
				}
				secretFile("aggregate target.password_file", o.Target.PasswordFile)
			}
		}
		if !seen["redis"] || !seen["aggregate"] {
			t.Errorf("%s: handlers %v, want the demo's redis and aggregate", n, seen)
		}
	}

	// The init script grants what kanal needs to the account the image makes,
	// and creates the tables the handlers read.
	var initSQL string
	for _, v := range p.Services["mysql"].Volumes {
		if v.Target == "/docker-entrypoint-initdb.d/init.sql" {
			b, err := os.ReadFile(filepath.Join("..", strings.TrimPrefix(v.Source, "./")))
			if err != nil {
				t.Fatal(err)
			}
			initSQL = string(b)
		}
	}
	for _, s := range []string{"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '" + mysql["MYSQL_USER"] + "'@'%'",
		"CREATE TABLE shop.users", "CREATE TABLE shop.earnings"} {
		if !strings.Contains(initSQL, s) {
			t.Errorf("the mysql init script does not say %q", s)
		}
	}
}

func envOf(s types.ServiceConfig) map[string]string {
	m := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			m[k] = *v
		}
	}
	return m
}

func mountsSecret(s types.ServiceConfig, name string) bool {
	return slices.ContainsFunc(s.Secrets, func(sc types.ServiceSecretConfig) bool {
		return sc.Source == name && (sc.Target == "" || sc.Target == name || sc.Target == "/run/secrets/"+name)
	})
}
