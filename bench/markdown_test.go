package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, fixedResults()); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	lines := strings.Split(md, "\n")
	// rowIn returns the cells of the first line starting with prefix after the heading.
	rowIn := func(heading, prefix string) []string {
		t.Helper()
		seen := heading == ""
		for _, l := range lines {
			seen = seen || l == heading
			if seen && strings.HasPrefix(l, prefix) {
				var cells []string
				for _, c := range strings.Split(strings.Trim(l, "|"), " | ") {
					cells = append(cells, strings.TrimSpace(c))
				}
				return cells
			}
		}
		t.Fatalf("no line starting %q after %q in:\n%s", prefix, heading, md)
		return nil
	}
	row := func(prefix string) []string { t.Helper(); return rowIn("", prefix) }
	for _, want := range []string{
		"# stdpkt benchmark",
		"stdpkt v-test on box (2 CPUs, linux/amd64, kernel 6.1), 2026-01-02T03:04:05Z, 1m1s in all.",
		"median of the runs (5, 3 for network stages",
		"## Latency of an idle chain",
		"## Connection table",
		"## Aims",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no %q in:\n%s", want, md)
		}
	}
	if h := row("| workload "); strings.Join(h, ",") != "workload,id,runs,packets,seconds,Mpps,Gbit/s,CPU s,peak RSS MiB,vs floor" {
		t.Errorf("header %q", h)
	}
	// fw-64: median 2 s of 1M packets, 64 B; the floor 0.05 s.
	if got, want := row("| cat f \\| stdpkt-fw (64 B)"), []string{`cat f \| stdpkt-fw (64 B)`, "fw-64", "3", "1000000", "2.000", "0.500", "0.256", "1.90", "30", "2%"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("fw-64 row %q, want %q", got, want)
	}
	if got := row("| floor: cat f \\| cat > /dev/null"); got[2] != "1" || got[4] != "0.050" || got[5] != "20.000" || got[8] != "<=8" {
		t.Errorf("floor row %q: want 1 run, 0.050 s, 20.000 Mpps, RSS <=8 (the runner's)", got)
	}
	if got := row("| idle latency: src \\| fw \\| nat \\| sink | latency-4"); got[5] != "paced" || got[9] != "-" {
		t.Errorf("latency row %q: want no rate, no floor", got)
	}
	if got := rowIn("## Latency of an idle chain", "| idle latency: src \\| fw \\| nat \\| sink |"); strings.Join(got[1:], ",") != "2000,40.5,60.2,90.0,1200.0" {
		t.Errorf("latency percentiles %q", got)
	}
	if got := rowIn("## Latency of an idle chain", "| floor: src \\| cat \\| cat \\| sink "); strings.Join(got[1:], ",") != "2000,30.0,50.0,80.4,900.0" {
		t.Errorf("latency floor percentiles %q", got)
	}
	if got := row("| 1M flows: cat f \\| stdpkt-fw |"); strings.Join(got[1:], ",") != "1000000,1000000,0,1100000,250" {
		t.Errorf("connections row %q", got)
	}
	if got := row("| added latency of an idle 4-stage chain, p99"); strings.Join(got[1:6], ",") != "latency-4,90 us,< 100 us,yes,floor (cat for the stages): p99 80 us" {
		t.Errorf("latency aim %q", got)
	}
	if got := row("| one stage at 64 B (fw)"); strings.Join(got[1:5], ",") != "fw-64,0.5 Mpps,>= 10 Mpps,no" {
		t.Errorf("fw aim %q", got)
	}
	if got := row("| peak RSS with 1M tracked flows"); got[4] != "yes" || !strings.Contains(got[5], "1000000 tracked") {
		t.Errorf("RSS aim %q", got)
	}
	// Every table row has as many cells as its header.
	for _, l := range lines {
		if strings.HasPrefix(l, "|") && strings.Count(strings.ReplaceAll(l, `\|`, ""), "|") < 3 {
			t.Errorf("short table line %q", l)
		}
	}
}

func TestWriteMarkdownQuick(t *testing.T) {
	r := fixedResults()
	r.Quick = true
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "**Quick run:**") {
		t.Errorf("a quick run does not say so:\n%s", b.String())
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	table(&b, [][]string{{"name", "n"}, {"a", "1000"}, {"longer", "2"}}, "lr")
	want := "" +
		"| name   |    n |\n" +
		"| ------ | ---: |\n" +
		"| a      | 1000 |\n" +
		"| longer |    2 |\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
