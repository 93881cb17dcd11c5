package status

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints the report for a terminal.
func WriteText(w io.Writer, r *Report) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "kanal status of prefix %q at %s\n\n", r.Prefix, r.GeneratedAt.Format(time.RFC3339))
	if len(r.Sources) == 0 {
		fmt.Fprintln(tw, "no sources (no producer has committed a position yet)")
	} else {
		fmt.Fprintln(tw, "SOURCE\tACTIVE\tSTANDBYS\tPOSITION\tSEQ\tLAG\tBEHIND\tRETENTION MARGIN")
		for _, s := range r.Sources {
			active := "none"
			if s.Active != nil {
				active = s.Active.Instance
			}
			if s.Election != "" && s.Election != "Stable" {
				active += " (" + s.Election + ")"
			}
			pos, seq := "-", "-"
			if s.Position != nil {
				pos = s.Position.File + ":" + strconv.FormatUint(uint64(s.Position.Pos), 10)
				if s.Position.RowsDone > 0 {
					pos += "+" + strconv.Itoa(s.Position.RowsDone) + "rows"
				}
				seq = strconv.FormatUint(s.Position.Seq, 10)
			}
			margin := "-"
			if s.RetentionMarginFiles != nil {
				margin = fmt.Sprintf("%d files, %s", *s.RetentionMarginFiles, bytesText(*s.RetentionMarginBytes))
			}
			behind := "-"
			if s.BytesBehind != nil {
				behind = bytesText(*s.BytesBehind)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", s.Name, active, len(s.Standbys), pos, seq, secondsText(s.LagSeconds), behind, margin)
		}
	}
	for _, g := range r.Groups {
		var members []string
		for _, m := range g.Members {
			members = append(members, m.Instance)
		}
		fmt.Fprintf(tw, "\nGROUP %s  state %s  members %d (%s)  dead letters %d\n", g.Name, g.State, len(g.Members), strings.Join(members, ", "), g.DeadLetters)
		if len(g.Handlers) > 0 {
			fmt.Fprintf(tw, "  handlers: %s\n", strings.Join(g.Handlers, ", "))
		}
		fmt.Fprintln(tw, "  TABLE\tLAG\tFRESHNESS\tHALTED")
		for _, t := range g.Tables {
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\n", t.Table, t.LagRecords, secondsText(t.FreshnessSeconds), t.Halted)
		}
		for _, h := range g.Halted {
			fmt.Fprintf(tw, "  halted: handler %s at %s/%d@%d (table %s, key %s) since %s: %s\n", h.Handler, h.Topic, h.Partition, h.Offset,
				h.Table, h.Key, time.UnixMilli(h.SinceMs).UTC().Format(time.RFC3339), h.Error)
		}
	}
	return tw.Flush()
}

func secondsText(s *float64) string {
	if s == nil {
		return "-"
	}
	return (time.Duration(*s * float64(time.Second))).Round(100 * time.Millisecond).String()
}

func bytesText(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
