// Package testenv starts private servers for tests: MariaDB, Redis, Postgres,
// RabbitMQ and memcached as child processes, Kafka as an in-process kfake
// cluster.
//
// Every server listens on 127.0.0.1 on a random free port, keeps its files in
// a temporary directory and is stopped by pid in t.Cleanup, so tests never
// touch system services and can run in parallel. Each server writes its log
// to a file in its directory; when a start fails, the last lines of that log
// are part of the test failure.
//
// The binaries come from Debian packages installed by deploy/local/install.sh.
// When one is missing the test fails with a message naming that script, or is
// skipped under -short. Under -short the process-based servers (MariaDB,
// Redis, Postgres, RabbitMQ, memcached) are always skipped, because -short
// promises a run without external servers; Kafka is in-process and starts in
// every mode.
//
// The constructors take a T, the part of testing.TB they use, so tests pass
// their *testing.T and the benchmark harness passes its own small T. They call
// t.Fatal or t.Skip, so call them from the test's own goroutine.
package testenv
