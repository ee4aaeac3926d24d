package bench

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteMarkdown writes r as a Markdown report: how it was measured, one table of every
// workload next to its floor, the latency and connection tables, and the aims.
func WriteMarkdown(w io.Writer, r *Results) error {
	bw := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(bw, format, args...) }

	p("# stdpkt benchmark\n\n")
	h := r.Host
	p("stdpkt %s on %s (%d CPUs, %s/%s, kernel %s), %s, %s in all.\n",
		r.Version, h.Name, h.CPUs, h.OS, h.Arch, h.Kernel, r.Started.Format(time.RFC3339), time.Duration(r.Seconds*float64(time.Second)).Round(time.Second))
	p("Load average (1 min) %.2f before, %.2f after: anything else running on the machine disturbs the numbers.\n\n", h.LoadStart[0], h.LoadEnd[0])
	if r.Quick {
		p("**Quick run:** small packet counts, to show that everything runs; the numbers say little and the aims are about the full sizes.\n\n")
	}
	p("Seconds: wall time, median of the runs (%d, %d for network stages and paced chains). CPU s: user + system time of every\n", r.Runs, r.StackRuns)
	p("process of the pipeline, median. Peak RSS: the largest single process, largest over the runs; Linux counts the\n")
	p("memory of the runner that starts bash into it, so nothing measures below %.0f MiB (bash -c true), shown as <=%.0f.\n", r.RunnerRSSMiB, r.RunnerRSSMiB)
	p("Floor: the same trace through `cat` and as many pipes; vs floor = floor seconds / workload seconds (100%% = as fast\n")
	p("as `cat | cat`).\n\n")

	rows := [][]string{{"workload", "id", "runs", "packets", "seconds", "Mpps", "Gbit/s", "CPU s", "peak RSS MiB", "vs floor"}}
	for _, res := range r.Workloads {
		m := res.Run
		row := []string{cell(res.Label), res.ID, fmt.Sprint(m.Runs), fmt.Sprint(res.Packets), f3(m.Seconds), f3(m.Mpps), f3(m.Gbps), f2(m.CPUSeconds), rss(m.PeakRSSMiB, r.RunnerRSSMiB), "-"}
		if res.Kind == Latency {
			row[5], row[6] = "paced", "paced"
		}
		if res.Floor != nil && res.Kind != Latency {
			row[9] = fmt.Sprintf("%.0f%%", 100*res.FloorShare)
		}
		rows = append(rows, row)
		if f := res.Floor; f != nil {
			frow := []string{cell("floor: " + res.floorLabel()), "", fmt.Sprint(f.Runs), fmt.Sprint(res.Packets), f3(f.Seconds), f3(f.Mpps), f3(f.Gbps), f2(f.CPUSeconds), rss(f.PeakRSSMiB, r.RunnerRSSMiB), ""}
			if res.Kind == Latency {
				frow[5], frow[6] = "paced", "paced"
			}
			rows = append(rows, frow)
		}
	}
	table(bw, rows, "llrrrrrrrr")

	var lat [][]string
	var conn [][]string
	for _, res := range r.Workloads {
		if l := res.Latency; l != nil {
			lat = append(lat, []string{cell(res.Label), fmt.Sprint(l.Samples), f1(l.P50), f1(l.P90), f1(l.P99), f1(l.Max)})
		}
		if l, f := res.FloorLatency, res.Floor; l != nil && f != nil {
			lat = append(lat, []string{cell("floor: " + res.floorLabel()), fmt.Sprint(l.Samples), f1(l.P50), f1(l.P90), f1(l.P99), f1(l.Max)})
		}
		if c := res.Connections; c != nil {
			conn = append(conn, []string{cell(res.Label), fmt.Sprint(res.Packets), fmt.Sprint(c.Tracked), fmt.Sprint(c.Refused), fmt.Sprint(c.Limit), rss(res.Run.PeakRSSMiB, r.RunnerRSSMiB)})
		}
	}
	if len(lat) > 0 {
		p("\n## Latency of an idle chain\n\n")
		p("Packets sent one at a time (%d per second), each stamped when sent; the sink's arrival time minus that stamp, in\n", LatencyRate)
		p("microseconds (median over the runs of each percentile). The source starts sending once the stages have started.\n")
		p("A floor puts `cat` in place of the stages between source and sink: the same pipes, each hop a process woken by\n")
		p("the kernel, which is most of an idle chain's latency on a virtual machine.\n\n")
		table(bw, append([][]string{{"chain", "packets", "p50 us", "p90 us", "p99 us", "max us"}}, lat...), "lrrrrr")
	}
	if len(conn) > 0 {
		p("\n## Connection table\n\n")
		p("One packet per flow; the stage's own count at the end (--stats-json): the fewest tracked and the most refused over the runs.\n\n")
		table(bw, append([][]string{{"workload", "flows sent", "tracked", "refused (full)", "limit", "peak RSS MiB"}}, conn...), "lrrrrr")
	}
	if len(r.Aims) > 0 {
		p("\n## Aims\n\n")
		rows := [][]string{{"aim", "id", "measured", "aim", "met", "note"}}
		for _, a := range r.Aims {
			measured, met := "-", "no"
			if a.Measured {
				measured = a.Metric.Format(a.Value)
			}
			if a.Met {
				met = "yes"
			}
			rows = append(rows, []string{cell(a.Name), a.Workload, measured, a.TargetText(), met, cell(a.Note)})
		}
		table(bw, rows, "llrrll")
	}
	return bw.Flush()
}

// floorLabel shortens a floor command for the table: the trace path becomes f.
func (r *Result) floorLabel() string {
	if r.FloorLabel != "" {
		return r.FloorLabel
	}
	fields := strings.Fields(r.Floor.Command)
	if len(fields) > 1 && fields[0] == "cat" {
		fields[1] = "f"
	}
	return strings.Join(fields, " ")
}

// cell makes s safe in a Markdown table cell.
func cell(s string) string {
	return strings.ReplaceAll(s, "|", `\|`)
}

// table writes rows as a Markdown table, the first row the header, padded so that it also
// reads as plain text; align has an l or r per column.
func table(w io.Writer, rows [][]string, align string) {
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c), 3)
		}
	}
	line := func(row []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i < len(align) && align[i] == 'r' {
				b.WriteString(" " + pad + c + " |")
			} else {
				b.WriteString(" " + c + pad + " |")
			}
		}
		fmt.Fprintln(w, b.String())
	}
	line(rows[0])
	sep := make([]string, len(width))
	for i, n := range width {
		if i < len(align) && align[i] == 'r' {
			sep[i] = strings.Repeat("-", n-1) + ":"
		} else {
			sep[i] = strings.Repeat("-", n)
		}
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
}

// rss writes a peak RSS in MiB, or <=runner when it is no more than the runner's own.
func rss(v, runner float64) string {
	if v <= runner+0.5 {
		return "<=" + f0(runner)
	}
	return f0(v)
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f3(v float64) string { return fmt.Sprintf("%.3f", v) }
