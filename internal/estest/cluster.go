package estest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Cluster reads documents back over HTTP, from a Server or a real cluster.
type Cluster struct {
	URL string
	// User and Pass, when set, authenticate with HTTP basic auth.
	User, Pass string
}

// Call sends body (JSON-encoded when not nil) and returns the status and the
// answer; a transport error fails the test.
func (c Cluster) Call(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.URL, "/")+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.User != "" {
		req.SetBasicAuth(c.User, c.Pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// Hit is a document found by Search.
type Hit struct {
	Index, ID string
	// Source is the document, numbers as json.Number.
	Source map[string]any
}

// Search refreshes the indexes matching pattern and returns every document
// (up to 10,000).
func (c Cluster) Search(t testing.TB, pattern string) []Hit {
	t.Helper()
	if st, body := c.Call(t, http.MethodPost, "/"+pattern+"/_refresh?ignore_unavailable=true&allow_no_indices=true", nil); st/100 != 2 && st != 404 {
		t.Fatalf("refresh %s: %d %s", pattern, st, body)
	}
	st, body := c.Call(t, http.MethodPost, "/"+pattern+"/_search?ignore_unavailable=true&allow_no_indices=true",
		map[string]any{"size": 10000, "query": map[string]any{"match_all": map[string]any{}}})
	if st == 404 {
		return nil
	}
	if st/100 != 2 {
		t.Fatalf("search %s: %d %s", pattern, st, body)
	}
	var resp struct {
		Hits struct {
			Hits []struct {
				Index  string          `json:"_index"`
				ID     string          `json:"_id"`
				Source json.RawMessage `json:"_source"`
			} `json:"hits"`
		} `json:"hits"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatal(err)
	}
	var out []Hit
	for _, h := range resp.Hits.Hits {
		dec := json.NewDecoder(bytes.NewReader(h.Source))
		dec.UseNumber()
		var src map[string]any
		if err := dec.Decode(&src); err != nil {
			t.Fatal(err)
		}
		out = append(out, Hit{h.Index, h.ID, src})
	}
	return out
}
