package sink

import (
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Add(time.Duration(i) * time.Microsecond)
	}
	h.Add(-time.Second)
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{.5, 500 * time.Microsecond}, {.9, 900 * time.Microsecond}, {.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.07 {
			t.Errorf("q%.2f = %v, want %v to within a bucket (+6.25%%)", c.q, got, c.want)
		}
	}
	if h.Count() != 1000 || h.Negative() != 1 || h.Max() != time.Millisecond {
		t.Errorf("count %d negative %d max %v", h.Count(), h.Negative(), h.Max())
	}
}

func TestBucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 15, 16, 17, 31, 32, 1000, 1 << 40, 1<<63 - 1} {
		b := bucket(v)
		if bucketTop(b) < v || (b > 0 && bucketTop(b-1) >= v) {
			t.Errorf("value %d in bucket %d with top %d (previous top %d)", v, b, bucketTop(b), bucketTop(b-1))
		}
	}
}
