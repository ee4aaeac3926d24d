package bench

import (
	"errors"
	"fmt"
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart colours.
func stdpktColor() color.Color { return color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff} }
func floorColor() color.Color  { return color.RGBA{R: 0xbb, G: 0xbb, B: 0xbb, A: 0xff} }
func aimColor() color.Color    { return color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff} }

// WriteChart draws the throughput of each workload that has a floor next to that floor,
// in Mpps on a log scale, with the throughput aims marked, into path; the format follows
// the extension (.svg, .png, .pdf).
func WriteChart(path string, r *Results) error {
	rows := chartRows(r)
	if len(rows) == 0 {
		return errors.New("chart: no workload with a throughput and a floor")
	}
	n := len(rows)
	// The first workload at the top: row i sits at y = n-1-i.
	y := func(i int) float64 { return float64(n - 1 - i) }

	p := plot.New()
	p.Title.Text = "stdpkt throughput next to its floor (cat through as many pipes)"
	if r.Quick {
		p.Title.Text += ": quick run, small counts"
	}
	p.X.Label.Text = "Mpps (log scale)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true

	stdpkt := hbars{color: stdpktColor(), shift: 0.2, height: 0.38}
	floor := hbars{color: floorColor(), shift: -0.2, height: 0.38}
	names := make([]string, n)
	var labels plotter.XYLabels
	lo := math.Inf(1)
	for i, res := range rows {
		names[n-1-i] = res.ID
		stdpkt.bars = append(stdpkt.bars, bar{y(i), res.Run.Mpps})
		floor.bars = append(floor.bars, bar{y(i), res.Floor.Mpps})
		lo = min(lo, res.Run.Mpps, res.Floor.Mpps)
		labels.XYs = append(labels.XYs, plotter.XY{X: res.Run.Mpps, Y: y(i) + 0.2})
		labels.Labels = append(labels.Labels, fmt.Sprintf(" %.3g", res.Run.Mpps))
	}
	// Bars start a little left of the smallest value: a log scale has no zero.
	base := math.Pow(10, math.Floor(math.Log10(lo)))
	stdpkt.base, floor.base = base, base
	p.Add(floor, stdpkt)
	p.Legend.Add("stdpkt", stdpkt)
	p.Legend.Add("floor: cat | cat", floor)

	aimed := false
	for _, a := range r.Aims {
		for i, res := range rows {
			if res.ID != a.Workload {
				continue
			}
			mpps, ok := aimMpps(a.Aim, res)
			if !ok {
				continue
			}
			line, err := plotter.NewLine(plotter.XYs{{X: mpps, Y: y(i) - 0.45}, {X: mpps, Y: y(i) + 0.45}})
			if err != nil {
				return fmt.Errorf("chart: aim %s: %w", a.Name, err)
			}
			line.Color, line.Width = aimColor(), vg.Points(2.5)
			p.Add(line)
			if !aimed {
				p.Legend.Add("aim", line)
				aimed = true
			}
		}
	}
	l, err := plotter.NewLabels(labels)
	if err != nil {
		return fmt.Errorf("chart: labels: %w", err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].YAlign = draw.YCenter
	}
	p.Add(l)
	p.NominalY(names...)
	// Room above the first row for the legend, which would hide bars or aims elsewhere.
	p.Y.Min, p.Y.Max = -0.6, float64(n)+1.3

	if err := p.Save(8*vg.Inch, vg.Length(1.9+0.45*float64(n))*vg.Inch, path); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	return nil
}

// chartRows returns the results the chart shows: those with a throughput and a floor (a
// paced chain's rate is its pace).
func chartRows(r *Results) []Result {
	var rows []Result
	for _, res := range r.Workloads {
		if res.Kind != Latency && res.Floor != nil && res.Run.Mpps > 0 && res.Floor.Mpps > 0 {
			rows = append(rows, res)
		}
	}
	return rows
}

// aimMpps converts a throughput aim of res into Mpps; false for an aim that is not about
// throughput.
func aimMpps(a Aim, res Result) (float64, bool) {
	switch a.Metric {
	case MetricMpps:
		return a.Target, true
	case MetricPPS:
		return a.Target / 1e6, true
	case MetricGbps:
		if res.FrameBytes == 0 {
			return 0, false
		}
		return a.Target * 1e9 / float64(res.FrameBytes*8) / 1e6, true
	case MetricFloorShare:
		if res.Floor == nil {
			return 0, false
		}
		return a.Target * res.Floor.Mpps, true
	}
	return 0, false
}

// bar is one horizontal bar: its row and its length.
type bar struct{ y, x float64 }

// hbars draws horizontal bars from base to each x, which a log scale allows (plotter's
// BarChart starts at 0).
type hbars struct {
	bars   []bar
	base   float64
	shift  float64 // of each bar's centre from its row, in rows
	height float64 // in rows
	color  color.Color
}

// Plot implements plot.Plotter.
func (h hbars) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for _, b := range h.bars {
		y0, y1 := trY(b.y+h.shift-h.height/2), trY(b.y+h.shift+h.height/2)
		x0, x1 := trX(h.base), trX(b.x)
		c.FillPolygon(h.color, c.ClipPolygonXY([]vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}))
	}
}

// DataRange implements plot.DataRanger.
func (h hbars) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = h.base, h.base
	ymin, ymax = math.Inf(1), math.Inf(-1)
	for _, b := range h.bars {
		xmax = max(xmax, b.x)
		ymin, ymax = min(ymin, b.y), max(ymax, b.y)
	}
	return xmin, xmax, ymin, ymax
}

// Thumbnail implements plot.Thumbnailer, for the legend.
func (h hbars) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(h.color, []vg.Point{c.Min, {X: c.Max.X, Y: c.Min.Y}, c.Max, {X: c.Min.X, Y: c.Max.Y}})
}
