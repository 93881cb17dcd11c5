// Package amqptest is what tests and the bench need on the receiving side of
// kanal's rabbitmq sink: reading a queue back, the dedupe a queue consumer
// does (by kanal.key and kanal.seq, as docs/rabbitmq.md tells users to) with the
// checks built on it, and a plain amqp091 publisher with confirms, the ceiling
// the sink's publishing rate is compared with.
package amqptest
