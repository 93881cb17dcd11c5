package essink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/kanal-cdc/kanal/secret"
	"github.com/kanal-cdc/kanal/tlsconfig"
)

// client speaks the few REST endpoints the sink uses (_bulk, _mget, and
// scrolled _search for truncates) to the
// configured URLs in turn. Why not elastic/go-elasticsearch or opensearch-go:
// the sink needs two endpoints whose request and response bodies are the same
// on Elasticsearch 7 and 8 and OpenSearch 2, while go-elasticsearch v8 refuses
// servers that are not Elasticsearch (its product check fails on OpenSearch) and
// opensearch-go targets OpenSearch; either would still leave the NDJSON
// encoding and the per-item classification to the sink.
type client struct {
	urls  []string
	next  atomic.Uint32
	http  *http.Client
	auth  string // the Authorization header, or ""
	query string // appended to _bulk
}

func newClient(cfg *Config) (*client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	tc, err := cfg.TLS.Client("tls")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if tc != nil {
		tr.TLSClientConfig = tc
	}
	password, err := secret.Password("password", cfg.Password, cfg.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c := &client{http: &http.Client{Transport: tr, Timeout: cfg.Timeout}}
	for _, u := range cfg.URLs {
		c.urls = append(c.urls, strings.TrimRight(u, "/"))
	}
	switch {
	case cfg.APIKey != "":
		c.auth = "ApiKey " + cfg.APIKey
	case cfg.Username != "":
		req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
		req.SetBasicAuth(cfg.Username, password)
		c.auth = req.Header.Get("Authorization")
	}
	if cfg.Refresh != "" {
		c.query = "?refresh=" + cfg.Refresh
	}
	return c, nil
}

// httpError is a response with an unexpected status.
type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.status, e.body) }

// retryable reports whether a failed request may succeed when sent again: the
// cluster was unreachable, overloaded (429) or failing (5xx).
func retryable(err error) bool {
	var he *httpError
	if errors.As(err, &he) {
		return he.status == http.StatusTooManyRequests || he.status >= 500
	}
	return true // transport errors, timeouts
}

// do POSTs body to path (under each URL in turn until one answers) and decodes
// a 2xx JSON answer into out.
func (c *client) do(ctx context.Context, path, contentType string, body []byte, out any) error {
	return c.call(ctx, http.MethodPost, path, contentType, body, out)
}

// call is do with another method.
func (c *client) call(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	var lastErr error
	for range c.urls {
		base := c.urls[int(c.next.Add(1)-1)%len(c.urls)]
		req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", contentType)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The URL has no credentials (Validate), so the error may name it.
			lastErr = tlsconfig.Explain("elasticsearch "+base, "tls", err)
			continue
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
		resp.Body.Close()
		if err != nil {
			lastErr = fmt.Errorf("%s%s: reading the answer: %w", base, path, err)
			continue
		}
		if resp.StatusCode/100 != 2 {
			snippet := string(data)
			if len(snippet) > 512 {
				snippet = snippet[:512] + "…"
			}
			return fmt.Errorf("%s%s: %w", base, path, &httpError{status: resp.StatusCode, body: snippet})
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s%s: unexpected answer: %w", base, path, err)
		}
		return nil
	}
	return lastErr
}

// bulkResponse is the part of a _bulk answer the sink reads: one item per
// action, under the action's name.
type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []struct {
		Index  *bulkItemResult `json:"index"`
		Create *bulkItemResult `json:"create"`
		Delete *bulkItemResult `json:"delete"`
	} `json:"items"`
}

type bulkItemResult struct {
	Index  string     `json:"_index"`
	ID     string     `json:"_id"`
	Status int        `json:"status"`
	Result string     `json:"result"`
	Error  *itemError `json:"error"`
}

type itemError struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
	// CausedBy is ES's nested cause (a mapper error's "failed to parse" has the
	// parsing error there).
	CausedBy *itemError `json:"caused_by"`
}

func (e *itemError) String() string {
	if e == nil {
		return "no reason given"
	}
	s := e.Type + ": " + e.Reason
	if e.CausedBy != nil {
		s += " (caused by " + e.CausedBy.String() + ")"
	}
	return s
}

// bulk sends one _bulk request and returns one result per action, in order.
func (c *client) bulk(ctx context.Context, body []byte, actions int) ([]bulkItemResult, error) {
	var resp bulkResponse
	if err := c.do(ctx, "/_bulk"+c.query, "application/x-ndjson", body, &resp); err != nil {
		return nil, err
	}
	if len(resp.Items) != actions {
		return nil, fmt.Errorf("_bulk answered %d items for %d actions", len(resp.Items), actions)
	}
	out := make([]bulkItemResult, len(resp.Items))
	for i, it := range resp.Items {
		switch {
		case it.Index != nil:
			out[i] = *it.Index
		case it.Create != nil:
			out[i] = *it.Create
		case it.Delete != nil:
			out[i] = *it.Delete
		default:
			return nil, fmt.Errorf("_bulk answered item %d without an index, create or delete result", i)
		}
	}
	return out, nil
}

// mgetDoc is one document of an _mget answer.
type mgetDoc struct {
	Index       string          `json:"_index"`
	ID          string          `json:"_id"`
	Found       bool            `json:"found"`
	SeqNo       *int64          `json:"_seq_no"`
	PrimaryTerm *int64          `json:"_primary_term"`
	Source      json.RawMessage `json:"_source"`
	Error       *itemError      `json:"error"`
}

// mget reads documents by index and id.
func (c *client) mget(ctx context.Context, refs []docRef) ([]mgetDoc, error) {
	type ref struct {
		Index string `json:"_index"`
		ID    string `json:"_id"`
	}
	req := struct {
		Docs []ref `json:"docs"`
	}{Docs: make([]ref, len(refs))}
	for i, r := range refs {
		req.Docs[i] = ref{r.index, r.id}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Docs []mgetDoc `json:"docs"`
	}
	if err := c.do(ctx, "/_mget", "application/json", body, &resp); err != nil {
		return nil, err
	}
	if len(resp.Docs) != len(refs) {
		return nil, fmt.Errorf("_mget answered %d documents for %d", len(resp.Docs), len(refs))
	}
	for i, d := range resp.Docs {
		// A missing index is an error per document; it holds no document either.
		if d.Error != nil && d.Error.Type != "index_not_found_exception" {
			return nil, fmt.Errorf("_mget %s/%s: %s", refs[i].index, refs[i].id, d.Error)
		}
	}
	return resp.Docs, nil
}

// scrollKeepAlive is how long the cluster keeps a truncate's scroll between two
// pages: one page's deletes (or joined documents) are written in between.
const scrollKeepAlive = "5m"

// scrollPage is one page of a scrolled search: the documents' index and id.
type scrollPage struct {
	ScrollID string `json:"_scroll_id"`
	Hits     struct {
		Hits []struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		} `json:"hits"`
	} `json:"hits"`
}

// refresh makes every document written to the indexes matching pattern
// visible to search (which otherwise sees them within the index's
// refresh_interval): a truncate must find the documents written just before it.
func (c *client) refresh(ctx context.Context, pattern string) error {
	var resp struct{}
	return c.do(ctx, "/"+pattern+"/_refresh?ignore_unavailable=true&allow_no_indices=true", "application/json", nil, &resp)
}

// scrollStart opens a scroll over every document of the indexes matching
// pattern (a missing index holds none) and returns its first page of up to size
// documents, ids only. The scroll is a point-in-time view: documents written
// while it is open are not in it.
func (c *client) scrollStart(ctx context.Context, pattern string, size int) (scrollPage, error) {
	body := fmt.Appendf(nil, `{"size":%d,"_source":false,"sort":["_doc"],"query":{"match_all":{}}}`, size)
	var p scrollPage
	err := c.do(ctx, "/"+pattern+"/_search?scroll="+scrollKeepAlive+"&ignore_unavailable=true&allow_no_indices=true",
		"application/json", body, &p)
	return p, err
}

// scrollNext returns the scroll's next page; an empty one at its end.
func (c *client) scrollNext(ctx context.Context, id string) (scrollPage, error) {
	body, err := json.Marshal(map[string]string{"scroll": scrollKeepAlive, "scroll_id": id})
	if err != nil {
		return scrollPage{}, err
	}
	var p scrollPage
	err = c.do(ctx, "/_search/scroll", "application/json", body, &p)
	return p, err
}

// scrollClear frees a scroll before its keep-alive runs out.
func (c *client) scrollClear(ctx context.Context, id string) error {
	body, err := json.Marshal(map[string][]string{"scroll_id": {id}})
	if err != nil {
		return err
	}
	var resp struct{}
	return c.call(ctx, http.MethodDelete, "/_search/scroll", "application/json", body, &resp)
}
