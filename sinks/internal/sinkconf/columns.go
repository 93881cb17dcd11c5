package sinkconf

// ColumnsConfig selects and renames columns. Names are source column names.
type ColumnsConfig struct {
	// Include, when not empty, stores only these columns.
	Include []string `yaml:"include"`
	// Exclude leaves these columns out.
	Exclude []string `yaml:"exclude"`
	// Rename maps a source column name to the name it is stored under.
	Rename map[string]string `yaml:"rename"`
}

// Validate checks the settings at field ("tables[0].columns"). reserved, when
// not nil, returns why a target name may not be used (the sink keeps its own
// members under some names), or nil when it may.
func (c *ColumnsConfig) Validate(field string, reserved func(name string) error) error {
	if len(c.Include) > 0 && len(c.Exclude) > 0 {
		return fieldError(field, "include and exclude are exclusive")
	}
	targets := make(map[string]string, len(c.Rename))
	for from, to := range c.Rename {
		if from == "" || to == "" {
			return fieldError(field+".rename", "empty column name")
		}
		if reserved != nil {
			if err := reserved(to); err != nil {
				return fieldError(field+".rename."+from, "%v", err)
			}
		}
		if other, dup := targets[to]; dup {
			// Map order picks which pair is named; either is the same mistake.
			return fieldError(field+".rename", "%q and %q both become %q", other, from, to)
		}
		targets[to] = from
	}
	return nil
}

// Columns is a compiled ColumnsConfig. The zero value keeps every column under
// its own name.
type Columns struct {
	include map[string]bool // nil: every column
	exclude map[string]bool
	rename  map[string]string
}

// Compile returns the column selection c describes.
func (c *ColumnsConfig) Compile() Columns {
	s := Columns{rename: c.Rename}
	if len(c.Include) > 0 {
		s.include = make(map[string]bool, len(c.Include))
		for _, col := range c.Include {
			s.include[col] = true
		}
	}
	if len(c.Exclude) > 0 {
		s.exclude = make(map[string]bool, len(c.Exclude))
		for _, col := range c.Exclude {
			s.exclude[col] = true
		}
	}
	return s
}

// Name reports whether a source column is kept, and under which name.
func (s *Columns) Name(col string) (string, bool) {
	if s.include != nil && !s.include[col] || s.exclude[col] {
		return "", false
	}
	if to, ok := s.rename[col]; ok {
		return to, true
	}
	return col, true
}
