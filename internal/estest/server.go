package estest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is an in-test server for the subset of the Elasticsearch REST API
// kanal's elasticsearch sink uses, with the semantics Elastic documents for it:
//
//   - _bulk with index, create and delete actions; version + version_type=external
//     (the write succeeds only when the given version is strictly higher than the
//     document's, or there is no document; otherwise 409
//     version_conflict_engine_exception for that item); if_seq_no +
//     if_primary_term (409 unless the document exists with exactly those); create
//     (409 when the document exists). A deleted document's version is kept for
//     index.gc_deletes (60s by default) and compared like a live one's.
//   - dynamic mapping: a field's type is fixed by its first non-null value (long,
//     double, boolean, object, date for strings that look like dates, text
//     otherwise); a value that cannot be read as that type fails its item with 400
//     mapper_parsing_exception ("failed to parse field [f] of type [long] in
//     document with id 'x'"). Numeric strings are accepted for numbers (coerce).
//   - near real-time search: _search sees an index as of its last refresh (an
//     explicit _refresh, a _bulk with refresh=true or wait_for, or, as the
//     default index.refresh_interval of 1s does, a search that finds the last
//     refresh older than a second); _mget is real-time.
//   - _mget (found, _seq_no, _primary_term, _source; a missing index is an
//     index_not_found_exception per document), _refresh, _search with match_all,
//     size and _source over index names or patterns (a missing named index is
//     404 index_not_found_exception unless ignore_unavailable=true); GET / (the
//     cluster's main endpoint, which clients ping).
//   - scrolls: _search?scroll=<keep-alive> takes a snapshot of the matching
//     documents and answers its first page with a _scroll_id; POST
//     /_search/scroll {"scroll","scroll_id"} answers the next page (an empty one
//     at the end) and extends the keep-alive; DELETE /_search/scroll
//     {"scroll_id":[…]} frees it. An unknown or expired id is 404
//     search_context_missing_exception. Writes during a scroll do not change
//     its pages, as in Elasticsearch (a point-in-time view).
//
// Faults are injected with Inject.
type Server struct {
	*httptest.Server

	mu         sync.Mutex
	indexes    map[string]*esIndex
	gcDeletes  time.Duration
	reject429  int
	fail503    int
	bulkBodies [][]byte // every _bulk body received, in order (not in ack-only mode)
	stats      Stats
	scrolls    map[string]*scrollCtx
	nextScroll int
	// ackOnly answers every bulk action with 201 without parsing or storing the
	// documents: for benchmarks of the handler's side.
	ackOnly bool
}

// Stats counts what the server was asked.
type Stats struct {
	// Requests counts HTTP requests, Actions the _bulk actions among them and
	// Conflicts the actions answered 409 (an older or equal external version, a
	// failed if_seq_no check, a create of an existing document).
	Requests, Actions, Conflicts int
	// Scrolls counts the scrolls opened, OpenScrolls those neither cleared nor
	// expired.
	Scrolls, OpenScrolls int
}

// scrollCtx is an open scroll: the documents still to return, as matched when
// it was opened.
type scrollCtx struct {
	hits      []map[string]any
	size      int
	keepAlive time.Duration
	expires   time.Time
}

type esIndex struct {
	docs    map[string]*esDoc
	mapping map[string]string // field path → type
	seqNo   int64
	// searchable is what search sees: the live documents at refreshedAt.
	searchable  map[string]*esDoc
	refreshedAt time.Time
}

// refreshInterval is Elasticsearch's default index.refresh_interval.
const refreshInterval = time.Second

// refresh makes every write so far visible to search. Writes replace a
// document's *esDoc, never change it, so the map of pointers is a snapshot.
func (idx *esIndex) refresh() {
	idx.searchable = make(map[string]*esDoc, len(idx.docs))
	for id, d := range idx.docs {
		if !d.deleted {
			idx.searchable[id] = d
		}
	}
	idx.refreshedAt = time.Now()
}

type esDoc struct {
	source    json.RawMessage
	version   int64
	seqNo     int64
	deleted   bool
	deletedAt time.Time
}

// NewServer starts a server on a random 127.0.0.1 port; Close stops it.
// ackOnly makes it answer every _bulk action with 201 without parsing or
// storing the documents: a ceiling for measuring the client's side.
func NewServer(ackOnly bool) *Server {
	s := &Server{indexes: map[string]*esIndex{}, scrolls: map[string]*scrollCtx{}, gcDeletes: 60 * time.Second, ackOnly: ackOnly}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Requests++
	if s.fail503 > 0 {
		s.fail503--
		writeJSON(w, 503, map[string]any{"error": map[string]any{"type": "unavailable_shards_exception", "reason": "injected"}, "status": 503})
		return
	}
	p := strings.Trim(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && p == "":
		// The cluster's main endpoint, which clients ping.
		writeJSON(w, 200, map[string]any{"name": "estest", "cluster_name": "estest",
			"version": map[string]any{"number": "8.15.0", "build_flavor": "default"}, "tagline": "You Know, for Search"})
	case r.Method == http.MethodPost && p == "_bulk" && s.ackOnly:
		s.ack(w, body)
	case r.Method == http.MethodPost && p == "_bulk":
		s.bulkBodies = append(s.bulkBodies, body)
		s.bulk(w, body, r.URL.Query().Get("refresh"))
	case r.Method == http.MethodPost && p == "_mget":
		s.mget(w, body)
	case strings.HasSuffix(p, "/_refresh"):
		names, missing := s.resolve(strings.TrimSuffix(p, "/_refresh"))
		if missing != "" && r.URL.Query().Get("ignore_unavailable") != "true" {
			writeJSON(w, 404, map[string]any{"error": map[string]any{"type": "index_not_found_exception",
				"reason": "no such index [" + missing + "]", "index": missing}, "status": 404})
			return
		}
		for _, name := range names {
			s.indexes[name].refresh()
		}
		writeJSON(w, 200, map[string]any{"_shards": map[string]int{"total": len(names), "successful": len(names), "failed": 0}})
	case r.Method == http.MethodPost && p == "_search/scroll":
		s.scroll(w, body)
	case r.Method == http.MethodDelete && p == "_search/scroll":
		s.clearScroll(w, body)
	case strings.HasSuffix(p, "/_search"):
		s.search(w, strings.TrimSuffix(p, "/_search"), r.URL.Query(), body)
	default:
		writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": "not implemented here: " + r.Method + " " + p}})
	}
}

// ack answers a _bulk body's actions with 201 each: every line that is not a
// document source (it has no _index) is an action.
func (s *Server) ack(w http.ResponseWriter, body []byte) {
	var out bytes.Buffer
	out.WriteString(`{"took":1,"errors":false,"items":[`)
	n := 0
	for _, line := range bytes.Split(body, []byte{'\n'}) {
		if !bytes.HasPrefix(line, []byte(`{"index":{"_index"`)) && !bytes.HasPrefix(line, []byte(`{"delete":{"_index"`)) {
			continue
		}
		if n > 0 {
			out.WriteByte(',')
		}
		n++
		s.stats.Actions++
		out.WriteString(`{"index":{"status":201,"result":"created"}}`)
	}
	out.WriteString("]}")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type bulkMeta struct {
	Index         string `json:"_index"`
	ID            string `json:"_id"`
	Version       *int64 `json:"version"`
	VersionType   string `json:"version_type"`
	IfSeqNo       *int64 `json:"if_seq_no"`
	IfPrimaryTerm *int64 `json:"if_primary_term"`
}

func (s *Server) bulk(w http.ResponseWriter, body []byte, refresh string) {
	touched := map[string]bool{}
	defer func() {
		if refresh == "true" || refresh == "wait_for" {
			for name := range touched {
				if idx := s.indexes[name]; idx != nil {
					idx.refresh()
				}
			}
		}
	}()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var items []map[string]any
	errors := false
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var act map[string]bulkMeta
		if err := json.Unmarshal(line, &act); err != nil || len(act) != 1 {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": fmt.Sprintf("Malformed action/metadata line: %s", line)}})
			return
		}
		for op, m := range act {
			var src json.RawMessage
			if op == "index" || op == "create" {
				if !sc.Scan() {
					writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline"}})
					return
				}
				src = append(json.RawMessage(nil), sc.Bytes()...)
			}
			res := s.item(op, m, src)
			touched[m.Index] = true
			s.stats.Actions++
			if res["status"] == 409 {
				s.stats.Conflicts++
			}
			if _, bad := res["error"]; bad {
				errors = true
			}
			items = append(items, map[string]any{op: res})
		}
	}
	writeJSON(w, 200, map[string]any{"took": 1, "errors": errors, "items": items})
}

func failure(m bulkMeta, status int, typ, reason string) map[string]any {
	return map[string]any{"_index": m.Index, "_id": m.ID, "status": status,
		"error": map[string]any{"type": typ, "reason": reason, "index": m.Index}}
}

// item applies one bulk action.
func (s *Server) item(op string, m bulkMeta, src json.RawMessage) map[string]any {
	if s.reject429 > 0 {
		s.reject429--
		return failure(m, 429, "es_rejected_execution_exception", "rejected execution of coordinating operation (injected)")
	}
	if op != "index" && op != "create" && op != "delete" {
		return failure(m, 400, "illegal_argument_exception", "unsupported action "+op)
	}
	idx := s.indexes[m.Index]
	if idx == nil {
		if op == "delete" && m.Version == nil && m.IfSeqNo == nil {
			return map[string]any{"_index": m.Index, "_id": m.ID, "status": 404, "result": "not_found"}
		}
		idx = &esIndex{docs: map[string]*esDoc{}, mapping: map[string]string{}}
		s.indexes[m.Index] = idx
	}
	cur := idx.docs[m.ID]
	if cur != nil && cur.deleted && time.Since(cur.deletedAt) > s.gcDeletes {
		delete(idx.docs, m.ID) // the deleted document's version is forgotten
		cur = nil
	}
	live := cur != nil && !cur.deleted
	external := m.VersionType == "external"
	switch {
	case external && m.Version == nil:
		return failure(m, 400, "action_request_validation_exception", "Validation Failed: 1: an external version is required;")
	case external && cur != nil && *m.Version <= cur.version:
		return failure(m, 409, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, current version [%d] is higher or equal to the one provided [%d]", m.ID, cur.version, *m.Version))
	case m.IfSeqNo != nil && !live:
		return failure(m, 409, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, required seqNo [%d], primary term [%d]. but no document was found", m.ID, *m.IfSeqNo, *m.IfPrimaryTerm))
	case m.IfSeqNo != nil && (cur.seqNo != *m.IfSeqNo || m.IfPrimaryTerm == nil || *m.IfPrimaryTerm != 1):
		return failure(m, 409, "version_conflict_engine_exception",
			fmt.Sprintf("[%s]: version conflict, required seqNo [%d], primary term [%d]. current document has seqNo [%d] and primary term [1]", m.ID, *m.IfSeqNo, *m.IfPrimaryTerm, cur.seqNo))
	case op == "create" && live:
		return failure(m, 409, "version_conflict_engine_exception", fmt.Sprintf("[%s]: version conflict, document already exists (current version [%d])", m.ID, cur.version))
	}
	version := int64(1)
	switch {
	case external:
		version = *m.Version
	case cur != nil:
		version = cur.version + 1
	}
	if op == "delete" {
		if !live && !external {
			return map[string]any{"_index": m.Index, "_id": m.ID, "status": 404, "result": "not_found"}
		}
		idx.seqNo++
		idx.docs[m.ID] = &esDoc{version: version, seqNo: idx.seqNo, deleted: true, deletedAt: time.Now()}
		status, result := 200, "deleted"
		if !live {
			status, result = 404, "not_found"
		}
		return map[string]any{"_index": m.Index, "_id": m.ID, "_version": version, "result": result, "status": status,
			"_seq_no": idx.seqNo, "_primary_term": 1}
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return failure(m, 400, "mapper_parsing_exception", "failed to parse: "+err.Error())
	}
	if err := idx.checkMapping("", doc, m.ID); err != nil {
		return failure(m, 400, "mapper_parsing_exception", err.Error())
	}
	idx.seqNo++
	idx.docs[m.ID] = &esDoc{source: src, version: version, seqNo: idx.seqNo}
	status, result := 201, "created"
	if live {
		status, result = 200, "updated"
	}
	return map[string]any{"_index": m.Index, "_id": m.ID, "_version": version, "result": result, "status": status,
		"_seq_no": idx.seqNo, "_primary_term": 1}
}

var dateLike = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$`)

// checkMapping maps new fields and checks values against mapped types. It maps
// as it goes: a document that fails leaves the fields it mapped before the bad
// one, as Elasticsearch's dynamic mapping updates would.
func (idx *esIndex) checkMapping(prefix string, doc map[string]any, id string) error {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := idx.checkValue(prefix+k, doc[k], id); err != nil {
			return err
		}
	}
	return nil
}

func (idx *esIndex) checkValue(field string, v any, id string) error {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if err := idx.checkValue(field, e, id); err != nil {
				return err
			}
		}
		return nil
	}
	if v == nil {
		return nil
	}
	kind := ""
	switch x := v.(type) {
	case json.Number:
		kind = "long"
		if strings.ContainsAny(string(x), ".eE") {
			kind = "float"
		}
	case string:
		kind = "text"
		if dateLike.MatchString(x) {
			kind = "date"
		}
	case bool:
		kind = "boolean"
	case map[string]any:
		kind = "object"
	}
	mapped, ok := idx.mapping[field]
	if !ok {
		idx.mapping[field] = kind
		mapped = kind
	}
	bad := func() error {
		return fmt.Errorf("failed to parse field [%s] of type [%s] in document with id '%s'. Preview of field's value: '%v'", field, mapped, id, v)
	}
	switch mapped {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("object mapping for [%s] tried to parse field [%s] as object, but found a concrete value", field, field)
		}
		return idx.checkMapping(field+".", m, id)
	case "long", "float":
		switch x := v.(type) {
		case json.Number:
		case string:
			if _, err := strconv.ParseFloat(x, 64); err != nil {
				return bad()
			}
		default:
			return bad()
		}
	case "boolean":
		if s, ok := v.(string); ok && s != "true" && s != "false" {
			return bad()
		}
		if _, ok := v.(json.Number); ok {
			return bad()
		}
	case "date":
		s, ok := v.(string)
		if !ok || !dateLike.MatchString(s) {
			if _, num := v.(json.Number); !num {
				return bad()
			}
		}
	case "text":
		if _, ok := v.(map[string]any); ok {
			return fmt.Errorf("failed to parse field [%s] of type [text] in document with id '%s'. Preview of field's value: '%v'", field, id, v)
		}
	}
	return nil
}

func (s *Server) mget(w http.ResponseWriter, body []byte) {
	var req struct {
		Docs []struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		} `json:"docs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "parse_exception", "reason": err.Error()}})
		return
	}
	docs := make([]map[string]any, 0, len(req.Docs))
	for _, d := range req.Docs {
		idx := s.indexes[d.Index]
		if idx == nil {
			docs = append(docs, map[string]any{"_index": d.Index, "_id": d.ID,
				"error": map[string]any{"type": "index_not_found_exception", "reason": "no such index [" + d.Index + "]"}})
			continue
		}
		doc := idx.docs[d.ID]
		if doc == nil || doc.deleted {
			docs = append(docs, map[string]any{"_index": d.Index, "_id": d.ID, "found": false})
			continue
		}
		docs = append(docs, map[string]any{"_index": d.Index, "_id": d.ID, "found": true, "_version": doc.version,
			"_seq_no": doc.seqNo, "_primary_term": 1, "_source": doc.source})
	}
	writeJSON(w, 200, map[string]any{"docs": docs})
}

func (s *Server) search(w http.ResponseWriter, target string, q url.Values, body []byte) {
	size := 10
	withSource := true
	if len(body) > 0 {
		var req struct {
			Size   *int            `json:"size"`
			Query  map[string]any  `json:"query"`
			Source json.RawMessage `json:"_source"`
			Sort   []string        `json:"sort"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "parse_exception", "reason": err.Error()}})
			return
		}
		if _, ok := req.Query["match_all"]; len(req.Query) > 0 && !ok {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": "only match_all here"}})
			return
		}
		if len(req.Sort) > 0 && (len(req.Sort) != 1 || req.Sort[0] != "_doc") {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": "only sort [\"_doc\"] here"}})
			return
		}
		if req.Size != nil {
			size = *req.Size
		}
		withSource = string(req.Source) != "false"
	}
	names, missing := s.resolve(target)
	if missing != "" && q.Get("ignore_unavailable") != "true" {
		writeJSON(w, 404, map[string]any{"error": map[string]any{"type": "index_not_found_exception",
			"reason": "no such index [" + missing + "]", "index": missing}, "status": 404})
		return
	}
	var hits []map[string]any
	for _, name := range names {
		idx := s.indexes[name]
		if time.Since(idx.refreshedAt) >= refreshInterval {
			idx.refresh()
		}
		ids := make([]string, 0, len(idx.searchable))
		for id := range idx.searchable {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			hit := map[string]any{"_index": name, "_id": id}
			if withSource {
				hit["_source"] = idx.searchable[id].source
			}
			hits = append(hits, hit)
		}
	}
	total := len(hits)
	resp := map[string]any{"took": 1, "timed_out": false}
	if ka := q.Get("scroll"); ka != "" {
		keepAlive, err := time.ParseDuration(ka)
		if err != nil || keepAlive <= 0 {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": "failed to parse [scroll] " + ka}})
			return
		}
		s.nextScroll++
		id := fmt.Sprintf("scroll-%d", s.nextScroll)
		s.scrolls[id] = &scrollCtx{hits: hits, size: size, keepAlive: keepAlive}
		s.stats.Scrolls++
		resp["_scroll_id"] = id
		hits = s.scrolls[id].page()
	} else if len(hits) > size {
		hits = hits[:size]
	}
	resp["hits"] = map[string]any{"total": map[string]any{"value": total, "relation": "eq"}, "hits": hits}
	writeJSON(w, 200, resp)
}

// resolve returns the existing indexes a target names (comma-separated names
// and patterns), sorted, and the first named index that does not exist.
func (s *Server) resolve(target string) (names []string, missing string) {
	for _, pat := range strings.Split(target, ",") {
		if !strings.ContainsAny(pat, "*?") {
			if s.indexes[pat] != nil {
				if !slices.Contains(names, pat) {
					names = append(names, pat)
				}
			} else if missing == "" {
				missing = pat
			}
			continue
		}
		for name := range s.indexes {
			if ok, _ := path.Match(pat, name); ok && !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	sort.Strings(names)
	return names, missing
}

// page takes the scroll's next page and extends its keep-alive.
func (c *scrollCtx) page() []map[string]any {
	n := min(c.size, len(c.hits))
	out := c.hits[:n:n]
	c.hits = c.hits[n:]
	c.expires = time.Now().Add(c.keepAlive)
	if out == nil {
		out = []map[string]any{}
	}
	return out
}

// expireScrolls forgets the scrolls whose keep-alive ran out.
func (s *Server) expireScrolls() {
	now := time.Now()
	for id, c := range s.scrolls {
		if now.After(c.expires) {
			delete(s.scrolls, id)
		}
	}
}

func (s *Server) scroll(w http.ResponseWriter, body []byte) {
	var req struct {
		Scroll   string `json:"scroll"`
		ScrollID string `json:"scroll_id"`
	}
	if err := json.Unmarshal(body, &req); err != nil || req.ScrollID == "" {
		writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "action_request_validation_exception", "reason": "Validation Failed: 1: scrollId is missing;"}})
		return
	}
	s.expireScrolls()
	c := s.scrolls[req.ScrollID]
	if c == nil {
		writeJSON(w, 404, map[string]any{"error": map[string]any{"type": "search_phase_execution_exception", "reason": "all shards failed",
			"caused_by": map[string]any{"type": "search_context_missing_exception", "reason": "No search context found for id [" + req.ScrollID + "]"}}, "status": 404})
		return
	}
	if req.Scroll != "" {
		ka, err := time.ParseDuration(req.Scroll)
		if err != nil || ka <= 0 {
			writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "illegal_argument_exception", "reason": "failed to parse [scroll] " + req.Scroll}})
			return
		}
		c.keepAlive = ka
	}
	writeJSON(w, 200, map[string]any{"_scroll_id": req.ScrollID, "took": 1, "timed_out": false,
		"hits": map[string]any{"hits": c.page()}})
}

func (s *Server) clearScroll(w http.ResponseWriter, body []byte) {
	var req struct {
		ScrollID json.RawMessage `json:"scroll_id"`
	}
	var ids []string
	if err := json.Unmarshal(body, &req); err == nil {
		if json.Unmarshal(req.ScrollID, &ids) != nil {
			var one string
			if json.Unmarshal(req.ScrollID, &one) == nil {
				ids = []string{one}
			}
		}
	}
	if len(ids) == 0 {
		writeJSON(w, 400, map[string]any{"error": map[string]any{"type": "action_request_validation_exception", "reason": "Validation Failed: 1: no scroll ids specified;"}})
		return
	}
	s.expireScrolls()
	freed := 0
	for _, id := range ids {
		if s.scrolls[id] != nil {
			delete(s.scrolls, id)
			freed++
		}
	}
	status := 200
	if freed == 0 {
		status = 404
	}
	writeJSON(w, status, map[string]any{"succeeded": true, "num_freed": freed})
}

// Inject makes the next reject429 bulk items fail with 429
// es_rejected_execution_exception and the next fail503 requests with 503.
func (s *Server) Inject(reject429, fail503 int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject429, s.fail503 = reject429, fail503
}

// Bodies returns and forgets the _bulk bodies received so far.
func (s *Server) Bodies() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bulkBodies
	s.bulkBodies = nil
	return b
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireScrolls()
	st := s.stats
	st.OpenScrolls = len(s.scrolls)
	return st
}
