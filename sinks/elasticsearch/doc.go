// Package essink keeps Elasticsearch or OpenSearch indexes in sync with chosen
// MySQL tables: a consumer.Handler that indexes kanal change records with the
// _bulk API, one document per row, the primary key as document id.
//
// Every write carries the change's sequence (Change.Seq) as an external version
// (version_type=external), deletes too, so the cluster itself refuses changes
// older than the document: replays, redeliveries and late batches never move a
// document backwards, in any order. Each table goes to its index (optionally one
// per day or month of a date column), with columns included, excluded or renamed,
// and a child table's rows can be joined, one level deep, into an array or object
// field of their parent's documents.
//
// Items the cluster rejects for load (429) or fails (5xx) are retried with
// backoff; a document it refuses (a mapping error) goes to the dead-letter topic
// with the index, the id and the cluster's reason. It speaks the REST API that
// Elasticsearch 7 and 8 and OpenSearch 2 share; docs/elasticsearch.md has the
// details.
package essink
