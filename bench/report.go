package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Spread is a figure measured in one or more runs.
type Spread struct {
	Runs   int       `json:"runs"`
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
}

func spreadOf(vals []float64) *Spread {
	if len(vals) == 0 {
		return nil
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &Spread{Runs: len(s), Min: s[0], Median: med, Max: s[len(s)-1], Values: vals}
}

// Row is one line of the report.
type Row struct {
	ID      string  `json:"id"` // "1", "2", "4.redis" …
	Measure string  `json:"measure"`
	Unit    string  `json:"unit"`
	Value   *Spread `json:"value,omitempty"`
	// Ratio is the figure relative to RatioOf (per-run ratios of runs in the same round).
	Ratio   *Spread `json:"ratio,omitempty"`
	RatioOf string  `json:"ratio_of,omitempty"`
	Goal    string  `json:"goal,omitempty"`
	// Status is "ok", "MISSED", "not yet built", "failed: …" or "" (no goal).
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
}

// Report is everything one run of the benchmark measured.
type Report struct {
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Machine  Machine   `json:"machine"`
	Options  Options   `json:"options"`
	Workload *Workload `json:"workload"`
	// Narrow is the narrow-row workload of rows 7 (nil when that stage did not run).
	Narrow *NarrowWorkload `json:"narrow_workload,omitempty"`
	Rows   []*Row          `json:"rows"`
	// Profile is the CPU profile of an extra, unmeasured producer pass (--cpuprofile).
	Profile string `json:"cpu_profile,omitempty"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	MariaDB   string `json:"mariadb"`
	// LoadStart and LoadEnd are /proc/loadavg's 1, 5 and 15 minute averages when
	// the run began and ended: the build machines are shared, and a rate means
	// little without how busy the machine was.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

func fmtNum(v float64, unit string) string {
	switch {
	case unit == "rows/s" || unit == "rows":
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtSpread(s *Spread, unit string) string {
	if s == nil {
		return "—"
	}
	if s.Runs == 1 {
		return fmtNum(s.Median, unit)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.Median, unit), fmtNum(s.Min, unit), fmtNum(s.Max, unit))
}

// Markdown writes the report as a Markdown table plus the workload line.
func (r *Report) Markdown(w io.Writer) {
	wl := r.Workload
	fmt.Fprintf(w, "### kanal bench — %s, %d CPUs (%s), %s, MariaDB %s\n\n", r.Started.Format("2006-01-02 15:04"),
		r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.MariaDB)
	if r.Machine.LoadStart != "" {
		fmt.Fprintf(w, "Load average (1, 5, 15 min): %s at the start, %s at the end.\n\n", r.Machine.LoadStart, r.Machine.LoadEnd)
	}
	if wl != nil {
		// The binlog's size is measured by stage 1, which --stages may leave out.
		binlog := "not measured (stage 1 not run)"
		if wl.BinlogBytes > 0 {
			binlog = fmt.Sprintf("%.1f MB", float64(wl.BinlogBytes)/1e6)
		}
		fmt.Fprintf(w, "Workload: seed %d, %d row changes (%d inserts, %d updates, %d deletes) in %d 1,000-row and %d single-row transactions; binlog %s; generated in %.1fs.\n\n",
			wl.Seed, wl.RowChanges, wl.Inserts, wl.Updates, wl.Deletes, wl.BulkTxns, wl.SingleTxns, binlog, wl.GenSeconds)
	}
	fmt.Fprintln(w, "Values: median (min–max) over the runs; ratios are per round (same data, back to back), then median (min–max).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| # | measure | value | unit | runs | ratio | goal | status |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, row := range r.Rows {
		runs := "—"
		if row.Value != nil {
			runs = fmt.Sprint(row.Value.Runs)
		}
		ratio := ""
		if row.Ratio != nil {
			ratio = fmtSpread(row.Ratio, "") + " × " + row.RatioOf
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", row.ID, row.Measure,
			fmtSpread(row.Value, row.Unit), row.Unit, runs, ratio, row.Goal, row.Status)
	}
	notes := []string{}
	for _, row := range r.Rows {
		if row.Note != "" {
			notes = append(notes, fmt.Sprintf("- %s: %s", row.ID, row.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(notes, "\n"))
	}
	fmt.Fprintf(w, "\nTotal %.0fs.\n", r.Seconds)
}

// WriteJSON stores the report as bench-<time>.json in dir and returns the path.
func (r *Report) WriteJSON(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	mode := "full"
	if r.Options.Quick {
		mode = "quick"
	}
	path := filepath.Join(dir, fmt.Sprintf("bench-%s-%s.json", r.Started.Format("20060102-150405"), mode))
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}
