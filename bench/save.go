package bench

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// The files Save writes into its directory.
const (
	JSONFile     = "report.json"
	MarkdownFile = "report.md"
	ChartFile    = "throughput.svg"
)

// Save writes r into dir (made if missing) as JSONFile, MarkdownFile and ChartFile, and
// returns their paths. The chart is left out when no workload has a floor to draw it
// against (--only latency).
func Save(dir string, r *Results) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	var paths []string
	for _, f := range []struct {
		name  string
		write func(io.Writer, *Results) error
	}{{JSONFile, WriteJSON}, {MarkdownFile, WriteMarkdown}} {
		path := filepath.Join(dir, f.name)
		if err := writeFile(path, func(w io.Writer) error { return f.write(w, r) }); err != nil {
			return paths, err
		}
		paths = append(paths, path)
	}
	if len(chartRows(r)) == 0 {
		return paths, nil
	}
	chart := filepath.Join(dir, ChartFile)
	if err := WriteChart(chart, r); err != nil {
		return paths, err
	}
	return append(paths, chart), nil
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("writing %s: %w", path, cerr)
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
