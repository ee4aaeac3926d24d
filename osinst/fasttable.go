package osinst

import (
	"encoding/binary"
	"math/bits"
)

// fastTable maps flow directions to what the fast path holds for them. It is the one
// lookup every fast-path packet makes, so it is an open-addressing table made for the
// key: a Go map hashes and compares the 40-byte key through the runtime's generic code.
// A slot holds the key's full hash and the entry, which holds the key: 16-byte slots keep
// the table of a thousand flows in the L1 cache, and a probe reads an entry (which the
// fast path reads next anyway) only on a matching hash. Probing is linear; deletion
// shifts the following slots back, so no tombstones build up. The hash is keyed with
// random secrets per table, so flows cannot be chosen to collide (hash flooding).
type fastTable struct {
	slots  []fastSlot // a power of two long; a slot with a nil entry is free
	n      int
	secret [5]uint64
}

type fastSlot struct {
	hash uint64
	e    *fastEntry
}

const fastTableMin = 1 << 10

func newFastTable(rnd func() uint64) *fastTable {
	t := &fastTable{slots: make([]fastSlot, fastTableMin)}
	for i := range t.secret {
		t.secret[i] = rnd() | 1
	}
	return t
}

// Len returns the number of keys held; a nil table (no fast path) holds none.
func (t *fastTable) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// hash is keyed multiply-fold hashing (as wyhash's): each fold takes two key words. An
// IPv4 key is two words, one fold; an IPv6 key takes three, two of them side by side.
func (t *fastTable) hash(k *fastKey) uint64 {
	s := &t.secret
	ports := uint64(k.sport)<<32 | uint64(k.dport)<<16 | uint64(k.proto)<<8
	if k.v6 {
		ports |= 1
	}
	le := binary.LittleEndian
	if !k.v6 { // the addresses fit a word: one fold
		addrs := uint64(le.Uint32(k.src[:4]))<<32 | uint64(le.Uint32(k.dst[:4]))
		return mulFold(addrs^s[0], ports^s[1])
	}
	a := mulFold(le.Uint64(k.src[:8])^s[0], le.Uint64(k.dst[:8])^s[1])
	b := mulFold(le.Uint64(k.src[8:])^s[2], le.Uint64(k.dst[8:])^s[3])
	return mulFold(a^ports^s[4], b^s[0])
}

func mulFold(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

// Get returns the entry of k, or nil.
func (t *fastTable) Get(k *fastKey) *fastEntry {
	h := t.hash(k)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.e == nil {
			return nil
		}
		if s.hash == h && s.e.key.equal(k) {
			return s.e
		}
	}
}

// Put holds e under its key, replacing what the key had.
func (t *fastTable) Put(e *fastEntry) {
	k := &e.key
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
	h := t.hash(k)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.e == nil {
			*s = fastSlot{hash: h, e: e}
			t.n++
			return
		}
		if s.hash == h && s.e.key.equal(k) {
			s.e = e
			return
		}
	}
}

// Delete removes k and reports whether it was there.
func (t *fastTable) Delete(k *fastKey) bool {
	h := t.hash(k)
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for {
		s := &t.slots[i]
		if s.e == nil {
			return false
		}
		if s.hash == h && s.e.key.equal(k) {
			break
		}
		i = (i + 1) & mask
	}
	// Shift back every following slot of the run that may sit at i: one whose home slot
	// is not cyclically in (i, j].
	for j := (i + 1) & mask; t.slots[j].e != nil; j = (j + 1) & mask {
		home := t.slots[j].hash & mask
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = fastSlot{}
	t.n--
	return true
}

func (t *fastTable) resize(size int) {
	old := t.slots
	t.slots = make([]fastSlot, size)
	mask := uint64(size - 1)
	for _, s := range old {
		if s.e == nil {
			continue
		}
		i := s.hash & mask
		for t.slots[i].e != nil {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}
