// Package kafkaconn holds what every Kafka client of one kanal installation shares:
// the brokers, the topic prefix, TLS and SASL settings, and the franz-go options that
// connect with them. The producer, the consumer Runner and the commands all connect
// through it, so that they reach the same cluster the same way without importing
// each other.
package kafkaconn
