package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteChart(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"chart.svg", "chart.png"} {
		path := filepath.Join(dir, name)
		if err := WriteChart(path, fixedResults()); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 1000 {
			t.Errorf("%s: %d bytes", name, len(b))
		}
		if strings.HasSuffix(name, ".svg") {
			for _, want := range []string{"<svg", "fw-64", "flows-rss"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s: no %q", name, want)
				}
			}
			if strings.Contains(string(b), "latency-4") {
				t.Errorf("%s: the latency workload, which has no throughput, is drawn", name)
			}
		}
	}
}

func TestWriteChartNothingToDraw(t *testing.T) {
	r := fixedResults()
	r.Workloads = r.Workloads[2:] // latency only
	if err := WriteChart(filepath.Join(t.TempDir(), "c.svg"), r); err == nil {
		t.Error("a chart of no throughput: no error")
	}
}

func TestSave(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	paths, err := Save(dir, fixedResults())
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 3 {
		t.Fatalf("wrote %v, want 3 files", paths)
	}
	for _, name := range []string{JSONFile, MarkdownFile, ChartFile} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	r := fixedResults()
	r.Workloads = r.Workloads[2:]
	paths, err = Save(t.TempDir(), r)
	if err != nil || len(paths) != 2 {
		t.Errorf("latency only: wrote %v (%v), want the JSON and the Markdown, no chart", paths, err)
	}
}
