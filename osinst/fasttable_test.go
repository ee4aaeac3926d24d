package osinst

import (
	"math/rand/v2"
	"testing"
)

// The table against a Go map: random puts, gets and deletes over a small key space, so
// probe runs wrap around the slot array and deletions shift runs back across its end.
func TestFastTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, keys := range []int{8, 700, 5000} {
		tb := newFastTable(rng.Uint64)
		model := map[fastKey]*fastEntry{}
		key := func() fastKey {
			n := rng.IntN(keys)
			k := fastKey{proto: 17, sport: uint16(n), dport: 53, v6: n%7 == 0}
			k.src[0], k.dst[15] = byte(n>>8), byte(n)
			return k
		}
		for op := range 200_000 {
			k := key()
			switch rng.IntN(3) {
			case 0:
				e := &fastEntry{key: k}
				tb.Put(e)
				model[k] = e
			case 1:
				if got, want := tb.Delete(&k), model[k] != nil; got != want {
					t.Fatalf("%d keys, op %d: Delete(%v) = %v, want %v", keys, op, k, got, want)
				}
				delete(model, k)
			}
			if got, want := tb.Get(&k), model[k]; got != want {
				t.Fatalf("%d keys, op %d: Get(%v) = %p, want %p", keys, op, k, got, want)
			}
			if tb.Len() != len(model) {
				t.Fatalf("%d keys, op %d: Len %d, want %d", keys, op, tb.Len(), len(model))
			}
		}
		for k, e := range model { // every key still found after all the shifting
			if tb.Get(&k) != e {
				t.Fatalf("%d keys: %v lost", keys, k)
			}
		}
		free := 0
		for _, s := range tb.slots {
			if s.e == nil {
				free++
			}
		}
		if used := len(tb.slots) - free; used != len(model) || 4*used > 3*len(tb.slots) {
			t.Fatalf("%d keys: %d slots used of %d for %d keys", keys, used, len(tb.slots), len(model))
		}
	}
}

// Keys that differ in one field only (a scan of ports, of hosts) spread over the table:
// no probe run grows long, whichever field varies.
func TestFastTableSpreadsKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, vary := range []string{"sport", "dport", "src", "dst", "src6"} {
		tb := newFastTable(rng.Uint64)
		for i := range 20_000 {
			k := fastKey{proto: 6, sport: 40000, dport: 443}
			k.src[0], k.dst[0] = 192, 198
			switch vary {
			case "sport":
				k.sport = uint16(i)
			case "dport":
				k.dport = uint16(i)
			case "src":
				k.src[2], k.src[3] = byte(i>>8), byte(i)
			case "dst":
				k.dst[2], k.dst[3] = byte(i>>8), byte(i)
			case "src6":
				k.v6 = true
				k.src[14], k.src[15] = byte(i>>8), byte(i)
			}
			tb.Put(&fastEntry{key: k})
		}
		longest, run := 0, 0
		for _, s := range append(tb.slots, tb.slots...) { // twice: a run may wrap
			if s.e == nil {
				run = 0
				continue
			}
			run++
			longest = max(longest, min(run, len(tb.slots)))
		}
		// Linear probing at load 0.6 with a good hash: runs of a few dozen at most.
		if longest > 200 {
			t.Errorf("varying %s: a run of %d occupied slots in %d", vary, longest, len(tb.slots))
		}
	}
}
