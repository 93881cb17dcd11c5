// Package estest is an in-test stand-in for Elasticsearch (no Elasticsearch
// or OpenSearch server can run on the build machines): an HTTP server
// implementing the subset of the REST API kanal's elasticsearch sink uses, with
// the semantics Elastic documents, and a reader of documents over HTTP that
// works against it or a real cluster. The sink's tests, the end-to-end tests of
// the kanal binary and the bench use it.
package estest
