package osinst

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// FuzzParseTimeouts: whatever --timeout says, ParseTimeouts
//   - either succeeds, or returns an error that quotes the item at fault ("--timeout
//     \"ITEM\": "), the first bad one (the items before it parse alone);
//   - gives the same result twice;
//
// and on success every timeout is positive, each named one is the duration of the last item
// that names it, and the others are as they were.
func FuzzParseTimeouts(f *testing.F) {
	for _, s := range []string{"tcp-established=1h,udp=45s", "tcp=", "udp=-1s", "sctp=1s", "udp", "",
		"tcp-established=1h,udp=30s", "icmp=10s, other=1m", "udp=1s,udp=2s", "tcp=0s", "tcp=1ns",
		"udp=9223372036854775807ns", "udp=9223372036854775808ns", "tcp=1h30m,icmp=.5s", " udp = 1s", ",", "udp=1s,",
		"=1s", "TCP=1s", "udp=1d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		start := DefaultTimeouts()
		start.Other = 7 * time.Second
		got, got2 := start, start
		err := ParseTimeouts(spec, &got)
		err2 := ParseTimeouts(spec, &got2)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || err == nil && got != got2 {
			t.Fatalf("%q: %+v %v, then %+v %v", spec, got, err, got2, err2)
		}
		items := strings.Split(spec, ",")
		if err != nil {
			for i, it := range items {
				if strings.HasPrefix(err.Error(), fmt.Sprintf("--timeout %q: ", it)) {
					if i > 0 {
						var tm Timeouts
						if err := ParseTimeouts(strings.Join(items[:i], ","), &tm); err != nil {
							t.Fatalf("%q: error about item %d, but an earlier one is bad: %v", spec, i+1, err)
						}
					}
					return
				}
			}
			t.Fatalf("%q: error %q quotes no item", spec, err)
		}
		want := start
		fields := map[string]*time.Duration{"tcp-established": &want.TCPEstablished, "tcp": &want.TCP,
			"udp": &want.UDP, "icmp": &want.ICMP, "other": &want.Other}
		for _, it := range items {
			name, val, _ := strings.Cut(strings.TrimSpace(it), "=")
			d, err := time.ParseDuration(val)
			if fields[name] == nil || err != nil {
				t.Fatalf("%q: item %q accepted", spec, it)
			}
			*fields[name] = d
		}
		if got != want {
			t.Fatalf("%q: %+v, want %+v", spec, got, want)
		}
		for name, d := range map[string]time.Duration{"tcp-established": got.TCPEstablished, "tcp": got.TCP,
			"udp": got.UDP, "icmp": got.ICMP, "other": got.Other} {
			if d <= 0 {
				t.Fatalf("%q: %s timeout %v", spec, name, d)
			}
		}
	})
}
