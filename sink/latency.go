package sink

import (
	"math/bits"
	"time"
)

// subBuckets per power of two: values are kept to within 1/16 (about 6%).
const subBits = 4

// Histogram counts durations in log-linear buckets without allocating per sample.
type Histogram struct {
	counts   [64 << subBits]uint64
	n        uint64
	max      time.Duration
	negative uint64 // samples before their own timestamp: clocks or timestamps disagree
}

func bucket(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - 1 - subBits
	return (e+1)<<subBits | int(v>>uint(e))&(1<<subBits-1)
}

// bucketTop returns the largest value of bucket i.
func bucketTop(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i>>subBits - 1
	m := uint64(i&(1<<subBits-1) | 1<<subBits)
	return (m+1)<<uint(e) - 1
}

// Add counts one sample.
func (h *Histogram) Add(d time.Duration) {
	if d < 0 {
		h.negative++
		return
	}
	h.counts[bucket(uint64(d))]++
	h.n++
	h.max = max(h.max, d)
}

// Count returns the number of samples (negative ones excluded).
func (h *Histogram) Count() uint64 { return h.n }

// Negative returns the number of samples that came before their own timestamp.
func (h *Histogram) Negative() uint64 { return h.negative }

// Max returns the largest sample.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile returns the value below which a fraction q of the samples lie, to within a bucket.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketTop(i)), h.max)
		}
	}
	return h.max
}
