package report

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// style is how one system is drawn.
type style struct {
	name  string
	color color.Color
	shape draw.GlyphDrawer
}

var styles = map[string]style{
	Cairn: {"Cairn", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, draw.CircleGlyph{}},
	Etcd:  {"etcd 3.4", color.RGBA{R: 0xd6, G: 0x5f, B: 0x0e, A: 0xff}, draw.BoxGlyph{}},
}

// WritePlots writes one PNG per workload into dir, named <workload>.png:
// throughput against clients on the left, p99 latency against clients on
// the right, a line per system, from the medians of the closed-loop rows
// (open-loop rows and load cells are left out). It returns the files
// written.
func WritePlots(dir string, recs []Record) ([]string, error) {
	s := Summarize(recs)
	var workloads []string
	for _, r := range s.Rows {
		if r.Rate == 0 && r.Workload != LoadCell && !slices.Contains(workloads, r.Workload) {
			workloads = append(workloads, r.Workload)
		}
	}
	var files []string
	for _, wl := range workloads {
		f := filepath.Join(dir, wl+".png")
		if err := writePlot(f, wl, s); err != nil {
			return files, err
		}
		files = append(files, f)
	}
	return files, nil
}

func writePlot(file, workload string, s Summary) error {
	tput, p99 := plot.New(), plot.New()
	tput.Title.Text = workload + ": throughput (median)"
	tput.Y.Label.Text = "ops/s"
	tput.Y.Min = 0
	tput.Y.Tick.Marker = commaTicks{}
	p99.Title.Text = workload + ": p99 latency (median)"
	p99.Y.Label.Text = "p99 ms (log scale)"
	p99.Y.Scale = plot.LogScale{}
	var clients, lats, tputs []float64
	for _, sys := range []string{Cairn, Etcd} {
		var tp, lp plotter.XYs
		for _, r := range s.Rows {
			c, ok := s.Cells[r][sys]
			if r.Workload != workload || r.Rate != 0 || !ok {
				continue
			}
			x := float64(r.Clients)
			tp = append(tp, plotter.XY{X: x, Y: c.OpsPerSec})
			lp = append(lp, plotter.XY{X: x, Y: math.Max(c.P99, 0.001)})
			clients = append(clients, x)
			lats = append(lats, math.Max(c.P99, 0.001))
			tputs = append(tputs, c.OpsPerSec)
		}
		if len(tp) == 0 {
			continue
		}
		st := styles[sys]
		for _, pl := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{tput, tp}, {p99, lp}} {
			line, points, err := plotter.NewLinePoints(pl.xys)
			if err != nil {
				return fmt.Errorf("report: plot %s: %w", workload, err)
			}
			line.Color, line.Width = st.color, vg.Points(2)
			points.Color, points.Shape, points.Radius = st.color, st.shape, vg.Points(3.5)
			pl.p.Add(line, points)
			pl.p.Legend.Add(st.name, line, points)
		}
	}
	slices.Sort(clients)
	clients = slices.Compact(clients)
	for _, p := range []*plot.Plot{tput, p99} {
		p.Add(plotter.NewGrid())
		p.X.Label.Text = "clients (log scale)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = valueTicks(clients)
		if len(clients) > 0 {
			p.X.Min, p.X.Max = clients[0]/1.5, clients[len(clients)-1]*1.5
		}
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs, p.Legend.YOffs = vg.Points(12), -vg.Points(4)
		p.Title.TextStyle.Font.Size = vg.Points(13)
	}
	if len(tputs) > 0 {
		tput.Y.Max = slices.Max(tputs) * 1.12 // room above the highest point for the legend
	}
	if len(lats) > 0 {
		p99.Y.Min, p99.Y.Max = slices.Min(lats)/1.5, slices.Max(lats)*1.5
	}
	p99.Y.Tick.Marker = logTicks{}

	img := vgimg.NewWith(vgimg.UseWH(vg.Points(900), vg.Points(380)), vgimg.UseDPI(110))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Points(24), PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{tput, p99}}, tiles, dc)
	tput.Draw(canvases[0][0])
	p99.Draw(canvases[0][1])
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("report: write %s: %w", file, err)
	}
	return f.Close()
}

// valueTicks puts a labelled tick at each value (the client counts).
type valueTicks []float64

func (v valueTicks) Ticks(lo, hi float64) []plot.Tick {
	var t []plot.Tick
	for _, x := range v {
		if x >= lo && x <= hi {
			t = append(t, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'f', -1, 64)})
		}
	}
	return t
}

// logTicks labels 1, 2, 5 × powers of ten.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var t []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range []float64{1, 2, 5} {
			x := m * math.Pow(10, e)
			if x >= lo && x <= hi {
				t = append(t, plot.Tick{Value: x, Label: strconv.FormatFloat(x, 'g', -1, 64)})
			}
		}
	}
	return t
}

// commaTicks is gonum's default ticks with thousands separators.
type commaTicks struct{}

func (commaTicks) Ticks(lo, hi float64) []plot.Tick {
	t := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range t {
		if t[i].Label != "" {
			t[i].Label = thousands(t[i].Value)
		}
	}
	return t
}
