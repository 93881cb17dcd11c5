// Package rabbitmqsink publishes kanal change records to a RabbitMQ exchange: a
// consumer.Handler for services that consume binlog changes from queues.
//
// Each change becomes one persistent message — the kanal JSON envelope or a Canal
// FlatMessage (canal-json) — routed by "<db>.<table>" or a template, with the
// headers kanal.seq, kanal.op (c, u, d, r or t), kanal.pos, kanal.key and
// kanal.table. The channel is in confirm mode and a batch is applied only when
// the broker confirmed every message, so the Runner commits offsets after the
// broker has the changes: each change reaches RabbitMQ at least once, in per-key
// order, and consumers drop duplicates by kanal.key and kanal.seq.
//
// A TRUNCATE TABLE arrives as one truncate record per partition of the table's
// topic and each is published in its place, op t, key "<db>.<table>" (the kanal
// envelope with op "t" and no rows, or Canal's TRUNCATE DDL message): every row of
// the table with a lower kanal.seq is gone. Consumers apply every such message,
// without the dedupe.
//
// A broker that is down, a closed channel or connection, a nack or a missing
// confirmation make the handler publish the unconfirmed messages again after a
// backoff; a mandatory message no queue is bound for is dead-lettered with the
// broker's reason. docs/rabbitmq.md has the details and the consumer-side dedupe.
package rabbitmqsink
