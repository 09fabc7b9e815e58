package review

import (
	"context"
	"io"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

const benchRecords = 100_000

// heapPeak samples the heap while an export runs and reports the peak growth
// of the in-use heap (live objects plus fragmentation, like
// runtime.MemStats.HeapInuse) over the level before it. It reads
// runtime/metrics, which, unlike runtime.ReadMemStats, does not stop the
// world, so sampling every few milliseconds does not slow the export.
type heapPeak struct {
	base, peak uint64
	stop       chan struct{}
	done       sync.WaitGroup
}

var heapSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
}

func heapInUse() uint64 {
	s := slices.Clone(heapSamples)
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

func startHeapPeak() *heapPeak {
	runtime.GC()
	h := &heapPeak{base: heapInUse(), stop: make(chan struct{})}
	h.peak = h.base
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			h.peak = max(h.peak, heapInUse())
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

// growth stops the sampling and returns the peak growth in bytes.
func (h *heapPeak) growth() uint64 {
	close(h.stop)
	h.done.Wait()
	h.peak = max(h.peak, heapInUse())
	return h.peak - h.base
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkExport100k exports 100,000 generated records (10 user turns with
// bot replies and 8 human turns each, about 4 KB as JSON) per format from a
// source that generates them on the fly, so nothing but the exporter holds
// memory. It reports records/s, the output size and the peak heap growth.
func BenchmarkExport100k(b *testing.B) {
	src := genSource{n: benchRecords, from: weekFrom, span: 7 * 24 * time.Hour}
	e := testExporter(b, ExportConfig{})
	b.Run("source-only", func(b *testing.B) { // the generator's own cost, for reference
		for b.Loop() {
			n := 0
			if err := src.Reviews(context.Background(), weekFrom, weekTo, func(bridge.ReviewRecord) error { n++; return nil }); err != nil || n != benchRecords {
				b.Fatal(n, err)
			}
		}
		b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	for _, f := range Formats {
		b.Run(string(f), func(b *testing.B) {
			b.ReportAllocs()
			var peak uint64
			var out int64
			for b.Loop() {
				h := startHeapPeak()
				var w countWriter
				n, err := e.Export(context.Background(), &w, src, weekFrom, weekTo, f)
				peak = max(peak, h.growth())
				if err != nil || n != benchRecords {
					b.Fatalf("n = %d, err = %v", n, err)
				}
				out = w.n
			}
			b.ReportMetric(float64(benchRecords)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(out)/(1<<20), "out-MiB")
		})
	}
}

// TestExportBoundedMemory asserts what the benchmark shows: exporting 100,000
// records (about 400 MB if they were all held) grows the heap by less than
// 64 MiB in every format.
func TestExportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("exports 100,000 records per format")
	}
	n := benchRecords
	if raceEnabled {
		n = 10_000 // the race detector makes this slow; the bound holds alike
	}
	src := genSource{n: n, from: weekFrom, span: 7 * 24 * time.Hour}
	e := testExporter(t, ExportConfig{})
	const limit = 64 << 20
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			h := startHeapPeak()
			got, err := e.Export(context.Background(), io.Discard, src, weekFrom, weekTo, f)
			growth := h.growth()
			if err != nil || got != n {
				t.Fatalf("n = %d, err = %v", got, err)
			}
			t.Logf("%s: %d records, peak heap growth %.1f MiB", f, n, float64(growth)/(1<<20))
			if growth > limit {
				t.Errorf("peak heap growth %.1f MiB, want < 64 MiB", float64(growth)/(1<<20))
			}
		})
	}
}
