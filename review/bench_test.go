package review

import (
	"context"
	"io"
	"runtime"
	"runtime/metrics"
	"slices"
	"strings"
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

// retainedAtEnd wraps a Source and, right after the stream's last record was
// handed to the exporter (before the exporter writes its aggregates), runs a
// full GC and records the live heap: everything an export keeps per record is
// still reachable at that instant, and nothing transient is, so the figure is
// deterministic instead of depending on when the collector happens to run.
type retainedAtEnd struct {
	src  Source
	n    int
	live uint64
}

func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func (r *retainedAtEnd) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	seen := 0
	return r.src.Reviews(ctx, from, to, func(rec bridge.ReviewRecord) error {
		if err := fn(rec); err != nil {
			return err
		}
		if seen++; seen == r.n {
			runtime.GC()
			r.live = heapLive()
		}
		return nil
	})
}

// exportFunc is one way of exporting, so the memory check can be pointed at a
// deliberately wasteful exporter to prove it catches one.
type exportFunc func(ctx context.Context, w io.Writer, src Source, f Format) (int, error)

// retainedPerRecord exports n1 and then n2 generated records and returns the
// heap an export keeps per additional record: (live(n2) - live(n1)) / (n2 - n1),
// with live measured by retainedAtEnd. A streaming export's aggregates are
// capped, so the figure stays near 0 whatever n; an export that holds the
// records grows by the size of a record (about 4 KB here) for each.
func retainedPerRecord(t *testing.T, export exportFunc, f Format, n1, n2 int) (perRecord float64, live2 uint64) {
	t.Helper()
	var live [2]uint64
	for i, n := range []int{n1, n2} {
		runtime.GC()
		base := heapLive()
		src := &retainedAtEnd{src: genSource{n: n, from: weekFrom, span: 7 * 24 * time.Hour}, n: n}
		got, err := export(context.Background(), io.Discard, src, f)
		if err != nil || got != n {
			t.Fatalf("%s: n = %d, err = %v", f, got, err)
		}
		if src.live > base {
			live[i] = src.live - base
		}
	}
	return (float64(live[1]) - float64(live[0])) / float64(n2-n1), live[1]
}

// maxRetainedPerRecord is the heap an export may keep per record: a record
// of the generator is about 4 KB when held, a streaming export's capped
// aggregates (NLU examples, report samples and cases) cost a few bytes each.
const maxRetainedPerRecord = 256

// TestExportBoundedMemory asserts what the benchmark shows, in a way that
// does not depend on the record count being large: the heap an export keeps
// grows by less than maxRetainedPerRecord bytes per additional record (between
// n/4 and n records), and the peak heap growth while exporting n records stays
// under 64 MiB. TestExportMemoryCheckCatchesHoarding proves the first check
// fails for an export that loads everything.
func TestExportBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("exports 100,000 records per format")
	}
	n := benchRecords
	if raceEnabled {
		n = 10_000 // the race detector makes this slow; the per-record bound holds alike
	}
	e := testExporter(t, ExportConfig{})
	export := func(ctx context.Context, w io.Writer, src Source, f Format) (int, error) {
		return e.Export(ctx, w, src, weekFrom, weekTo, f)
	}
	const limit = 64 << 20
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			per, live := retainedPerRecord(t, export, f, n/4, n)
			t.Logf("%s: %.1f bytes kept per additional record (%d → %d records), %.1f MiB kept at %d records",
				f, per, n/4, n, float64(live)/(1<<20), n)
			if per > maxRetainedPerRecord {
				t.Errorf("export keeps %.1f bytes per record, want < %d: it holds records instead of streaming them", per, maxRetainedPerRecord)
			}
			src := genSource{n: n, from: weekFrom, span: 7 * 24 * time.Hour}
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

// TestExportMemoryCheckCatchesHoarding points the per-record check at an
// export that keeps a copy of every record until it finishes (as an exporter
// that loaded the whole range would): the check must report it, at the record
// counts TestExportBoundedMemory uses under -race.
func TestExportMemoryCheckCatchesHoarding(t *testing.T) {
	e := testExporter(t, ExportConfig{})
	var held []bridge.ReviewRecord
	hoard := func(ctx context.Context, w io.Writer, src Source, f Format) (int, error) {
		held = held[:0:0]
		defer func() { held = nil }()
		return e.Export(ctx, w, hoarder{src: src, held: &held}, weekFrom, weekTo, f)
	}
	for _, f := range []Format{FormatCSV, FormatNLU} {
		per, _ := retainedPerRecord(t, hoard, f, 2_500, 10_000)
		t.Logf("%s hoarding: %.1f bytes kept per record", f, per)
		if per <= maxRetainedPerRecord {
			t.Errorf("%s: a hoarding export keeps %.1f bytes per record, which passes the %d-byte bound: the check is vacuous", f, per, maxRetainedPerRecord)
		}
	}
}

// hoarder copies every record it streams (turns and texts included, as a
// database source decodes fresh ones) into held.
type hoarder struct {
	src  Source
	held *[]bridge.ReviewRecord
}

func (h hoarder) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	return h.src.Reviews(ctx, from, to, func(r bridge.ReviewRecord) error {
		c := r
		c.BotTurns, c.HumanTurns = slices.Clone(r.BotTurns), slices.Clone(r.HumanTurns)
		for i := range c.BotTurns {
			c.BotTurns[i].Text = strings.Clone(c.BotTurns[i].Text)
		}
		for i := range c.HumanTurns {
			c.HumanTurns[i].Text = strings.Clone(c.HumanTurns[i].Text)
		}
		*h.held = append(*h.held, c)
		return fn(r)
	})
}
