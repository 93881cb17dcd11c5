package redissink

import (
	"fmt"
	"path"
	"sync"

	"github.com/kanal-cdc/kanal/consumer"
	"github.com/redis/go-redis/v9"
)

// router holds the Redis clients and the compiled table rules; the Handler writes
// and the Reader reads through the same one, so both agree on where a row lives.
type router struct {
	cfg     Config
	clients map[string]*redis.Client
	tables  []*table

	mu      sync.RWMutex
	byTable map[string]*table // "db.table" → its rule, or nil when none matches
}

// table is a compiled TableConfig.
type table struct {
	match   string
	layout  layout
	prefix  string
	names   []string // instance names
	ring    *Ring    // nil when the table has one instance
	include map[string]bool
	exclude map[string]bool
	rename  map[string]string
	sets    []setRule
}

type setRule struct {
	key    template
	member *template // nil: the record key's primary-key part
}

func newRouter(cfg Config) (*router, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &router{cfg: cfg, clients: map[string]*redis.Client{}, byTable: map[string]*table{}}
	for i := range cfg.Tables {
		t, err := compileTable(&cfg, &cfg.Tables[i])
		if err != nil {
			return nil, fmt.Errorf("%w: tables[%d]: %w", ErrConfig, i, err)
		}
		r.tables = append(r.tables, t)
	}
	for name, in := range cfg.Instances {
		opts, err := in.ClientOptions(name)
		if err != nil {
			r.close()
			return nil, err
		}
		// The pipeline of one batch is written and read on one connection; a
		// context deadline, not a socket one, bounds it.
		opts.ContextTimeoutEnabled = true
		// Named like the handler's default consumer group, so that CLIENT
		// LIST tells which handler a connection belongs to.
		opts.ClientName = consumer.DefaultGroup(cfg.Name)
		r.clients[name] = redis.NewClient(opts)
	}
	return r, nil
}

func compileTable(cfg *Config, tc *TableConfig) (*table, error) {
	t := &table{match: tc.Match, layout: layoutHash, prefix: cfg.KeyPrefix, names: tc.Instances, rename: tc.Columns.Rename}
	if tc.Layout == LayoutJSON {
		t.layout = layoutJSON
	}
	if tc.KeyPrefix != nil {
		t.prefix = *tc.KeyPrefix
	}
	if len(t.names) == 0 {
		t.names = cfg.defaultInstances()
	}
	if len(t.names) > 1 {
		ring, err := NewRing(t.names, cfg.RingVNodes)
		if err != nil {
			return nil, err
		}
		t.ring = ring
	}
	if len(tc.Columns.Include) > 0 {
		t.include = map[string]bool{}
		for _, c := range tc.Columns.Include {
			t.include[c] = true
		}
	}
	if len(tc.Columns.Exclude) > 0 {
		t.exclude = map[string]bool{}
		for _, c := range tc.Columns.Exclude {
			t.exclude[c] = true
		}
	}
	for _, s := range tc.Sets {
		k, err := parseTemplate(s.Key)
		if err != nil {
			return nil, err
		}
		rule := setRule{key: k}
		if s.Member != "" {
			m, err := parseTemplate(s.Member)
			if err != nil {
				return nil, err
			}
			rule.member = &m
		}
		t.sets = append(t.sets, rule)
	}
	return t, nil
}

// table returns the rule for "db.table", or nil when no rule matches.
func (r *router) table(name string) *table {
	r.mu.RLock()
	t, ok := r.byTable[name]
	r.mu.RUnlock()
	if ok {
		return t
	}
	for _, c := range r.tables {
		if m, _ := path.Match(c.match, name); m {
			t = c
			break
		}
	}
	r.mu.Lock()
	r.byTable[name] = t
	r.mu.Unlock()
	return t
}

// instance returns the name of the instance holding rowKey.
func (t *table) instance(rowKey string) string {
	if t.ring == nil {
		return t.names[0]
	}
	return t.ring.Locate(rowKey)
}

// stored reports whether a source column is stored, and under which name.
func (t *table) stored(col string) (string, bool) {
	if t.include != nil && !t.include[col] || t.exclude[col] {
		return "", false
	}
	if to, ok := t.rename[col]; ok {
		return to, true
	}
	return col, true
}

func (r *router) close() error {
	var first error
	for _, c := range r.clients {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
