package source

import (
	"testing"
	"time"
)

// checkWait calls p.wait(ts) and fails unless it returns due less the time since the
// pacer's clock started, as measured just before and just after the call (the monotonic
// clock makes these exact bounds, whatever the machine's speed).
func checkWait(t *testing.T, p *pacer, ts int64, due time.Duration) {
	t.Helper()
	before := time.Now()
	w := p.wait(ts)
	after := time.Now()
	lo, hi := due-after.Sub(p.start), due-before.Sub(p.start)
	if w == 0 && hi <= 50*time.Microsecond {
		return // the machine stalled until the frame was all but due: it goes at once
	}
	if w < lo || w > hi {
		t.Errorf("wait(%d) = %v, want %v less the time since the start: %v to %v", ts, w, due, lo, hi)
	}
}

// Only --realtime or a positive --pps paces a replay; no rate, or a rate below zero, is top
// speed.
func TestPacerPaced(t *testing.T) {
	for _, c := range []struct {
		pps      float64
		realtime bool
		paced    bool
		interval time.Duration
	}{
		{0, false, false, 0},
		{-5, false, false, 0},
		{0, true, true, 0},
		{100, false, true, 10 * time.Millisecond},
		{3, false, true, 333333333},
		{1e9, false, true, time.Nanosecond},
		{100, true, true, 10 * time.Millisecond},
	} {
		p := newPacer(c.pps, c.realtime)
		if p.paced() != c.paced || p.interval != c.interval {
			t.Errorf("newPacer(%g, %v): paced %v, interval %v; want %v, %v", c.pps, c.realtime, p.paced(), p.interval, c.paced, c.interval)
		}
	}
}

// At a rate, frame k is due k intervals after the first frame went, whatever its
// timestamp; a late frame goes at once rather than waiting, and restart (the next loop)
// starts the count again.
func TestPacerRate(t *testing.T) {
	p := newPacer(4, false) // 250 ms apart
	p.restart()
	if w := p.wait(t0); w != 0 {
		t.Errorf("the first frame waits %v", w)
	}
	for k := 1; k <= 3; k++ {
		checkWait(t, p, t0-int64(k), time.Duration(k)*250*time.Millisecond) // timestamps do not matter
	}
	p.start = p.start.Add(-time.Hour) // the source fell an hour behind
	if w := p.wait(t0); w != 0 {
		t.Errorf("a late frame waits %v", w)
	}
	p.restart()
	if w := p.wait(t0); w != 0 {
		t.Errorf("the first frame after a restart waits %v", w)
	}
	checkWait(t, p, t0, 250*time.Millisecond)
}

// In real time a frame is due as long after the first frame as its timestamp is after the
// first frame's: the clock starts with the first frame, not with the file, a frame stamped
// earlier than the first goes at once, and a restart takes the next frame as the new first.
func TestPacerRealtime(t *testing.T) {
	p := newPacer(0, true)
	p.restart()
	if w := p.wait(t0); w != 0 {
		t.Errorf("the first frame waits %v", w)
	}
	checkWait(t, p, t0+int64(2*time.Second), 2*time.Second)
	checkWait(t, p, t0+int64(90*time.Minute), 90*time.Minute)
	if w := p.wait(t0 - int64(time.Hour)); w != 0 {
		t.Errorf("a frame stamped before the first waits %v", w)
	}
	p.restart()
	if w := p.wait(t0 + int64(time.Hour)); w != 0 {
		t.Errorf("the first frame after a restart waits %v", w)
	}
	checkWait(t, p, t0+int64(time.Hour+time.Second), time.Second)
}

// Waits under 50 us are not worth a sleep: frames due that soon go at once.
func TestPacerSlack(t *testing.T) {
	p := newPacer(1e9, false) // 1 ns apart
	p.restart()
	for i := range 1000 {
		if w := p.wait(0); w != 0 {
			t.Fatalf("frame %d, due %v after the first, waits %v", i, time.Duration(i), w)
		}
	}
	r := newPacer(0, true)
	r.restart()
	for _, d := range []time.Duration{0, time.Microsecond, 49 * time.Microsecond} {
		if w := r.wait(t0 + int64(d)); w != 0 {
			t.Errorf("a frame %v after the first waits %v", d, w)
		}
	}
}

// --realtime and --pps together: the trace's spacing wins and the rate is not used.
func TestPacerRealtimeBeforeRate(t *testing.T) {
	p := newPacer(1, true) // the rate alone would hold the second frame for a second
	p.restart()
	for i := range 3 {
		if w := p.wait(t0); w != 0 {
			t.Errorf("frame %d, stamped as the first, waits %v", i, w)
		}
	}
}
