// Package books keeps a stage's packet accounts: per direction, what came in, what the stage
// generated itself, what went out and what it dropped, by reason. Every stage keeps them and
// prints them on exit, and in + generated = out + dropped must hold once the stage is drained.
package books

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
)

// Dir is a direction of travel through a chain.
type Dir uint8

// Directions: eastbound is stdin to stdout; westbound is replies, over the return path.
const (
	East Dir = iota
	West
	numDirs
)

func (d Dir) String() string {
	if d == West {
		return "westbound"
	}
	return "eastbound"
}

// ErrNoReturnPath is what a westbound output says when no stage west of it takes replies;
// a stage counts what it could not send as dropped for NoReturnPath.
var ErrNoReturnPath = errors.New("no return path")

// ReasonFor returns the drop reason for an output's error.
func ReasonFor(err error) Reason {
	if errors.Is(err, ErrNoReturnPath) {
		return NoReturnPath
	}
	return Output
}

// Reason says why a packet was dropped.
type Reason uint8

// Drop reasons.
const (
	Rule         Reason = iota // a rule's verdict (per-rule counters say which)
	Invalid                    // conntrack INVALID, bad checksum, impossible flags
	Malformed                  // cannot be parsed: truncated headers, bad lengths
	NoRoute                    // no route or no neighbour for the destination
	TTL                        // TTL or hop limit expired
	NoReturnPath               // westbound with no stage to the west to take it
	Full                       // a bounded table or queue was full
	LinkType                   // a link type the stage cannot parse
	Unsent                     // still held (e.g. waiting for ARP) when the stage stopped
	Output                     // the output refused it
	Overrun                    // a capture ring was full: the kernel dropped it before we saw it
	TooBig                     // larger than a capture ring slot or the outgoing MTU
	Reassembled                // fragments merged: a translated datagram left in fewer frames
	Local                      // for the stage itself (a router's ARP, a ping to its address): consumed, not lost
	Duplicate                  // a fragment that repeats what its datagram already holds: the datagram goes on without it
	SourceRoute                // an IPv4 datagram with a source route option (LSRR, SSRR), which Linux does not forward
	numReasons
)

var reasonNames = [numReasons]string{"rule", "invalid", "malformed", "no-route", "ttl",
	"no-return-path", "full", "link-type", "unsent", "output", "ring-overrun", "too-big", "reassembled", "local", "duplicate", "source-route"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason-%d", r)
}

// Counter counts packets and their bytes. It is safe for concurrent use; callers add per batch.
type Counter struct {
	packets, bytes atomic.Uint64
}

// Add counts n packets of b bytes in all.
func (c *Counter) Add(n, b int) {
	c.packets.Add(uint64(n))
	c.bytes.Add(uint64(b))
}

// Packets returns the packets counted so far.
func (c *Counter) Packets() uint64 { return c.packets.Load() }

// Bytes returns the bytes counted so far.
func (c *Counter) Bytes() uint64 { return c.bytes.Load() }

// Side is one direction's accounts.
type Side struct {
	In, Generated, Out Counter
	Dropped            [numReasons]Counter
}

// Drop counts n packets of b bytes dropped for reason r.
func (s *Side) Drop(r Reason, n, b int) { s.Dropped[r].Add(n, b) }

// Retract moves n packets of b bytes that were counted Out to dropped for reason r: they
// were handed to an output that then failed before writing them.
func (s *Side) Retract(r Reason, n, b int) {
	s.Out.packets.Add(^uint64(n - 1)) // two's complement: subtracts n
	s.Out.bytes.Add(^uint64(b - 1))
	s.Drop(r, n, b)
}

// Books are a stage's accounts in both directions.
type Books struct {
	Dir [numDirs]Side
}

// East returns the eastbound accounts.
func (b *Books) East() *Side { return &b.Dir[East] }

// West returns the westbound accounts.
func (b *Books) West() *Side { return &b.Dir[West] }

// Tally is a plain copy of one counter.
type Tally struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// SideSnapshot is a plain copy of one direction's accounts.
type SideSnapshot struct {
	In        Tally            `json:"in"`
	Generated Tally            `json:"generated"`
	Out       Tally            `json:"out"`
	Dropped   map[string]Tally `json:"dropped"`
}

// DroppedPackets sums the drops of every reason.
func (s SideSnapshot) DroppedPackets() uint64 {
	var n uint64
	for _, t := range s.Dropped {
		n += t.Packets
	}
	return n
}

// Balanced reports whether in + generated = out + dropped.
func (s SideSnapshot) Balanced() bool {
	return s.In.Packets+s.Generated.Packets == s.Out.Packets+s.DroppedPackets()
}

// Snapshot is a plain copy of the books, for printing and JSON.
type Snapshot struct {
	East SideSnapshot `json:"eastbound"`
	West SideSnapshot `json:"westbound"`
}

func tally(c *Counter) Tally { return Tally{c.Packets(), c.Bytes()} }

func (s *Side) snapshot() SideSnapshot {
	out := SideSnapshot{In: tally(&s.In), Generated: tally(&s.Generated), Out: tally(&s.Out),
		Dropped: map[string]Tally{}}
	for r := range s.Dropped {
		if t := tally(&s.Dropped[r]); t.Packets > 0 {
			out.Dropped[Reason(r).String()] = t
		}
	}
	return out
}

// Snapshot copies the books.
func (b *Books) Snapshot() Snapshot {
	return Snapshot{East: b.Dir[East].snapshot(), West: b.Dir[West].snapshot()}
}

// Check returns an error naming the direction whose books do not balance.
func (s Snapshot) Check() error {
	for _, d := range []struct {
		name string
		s    SideSnapshot
	}{{"eastbound", s.East}, {"westbound", s.West}} {
		if !d.s.Balanced() {
			return fmt.Errorf("%s books do not balance: in %d + generated %d != out %d + dropped %d",
				d.name, d.s.In.Packets, d.s.Generated.Packets, d.s.Out.Packets, d.s.DroppedPackets())
		}
	}
	return nil
}

// Format writes the books as short lines, one per direction that saw traffic, e.g.
//
//	stdpkt-fw eastbound: in 1000 (64000 B) generated 0 out 990 dropped 10 (rule 10)
func (s Snapshot) Format(w io.Writer, stage string) {
	for _, d := range []struct {
		name string
		s    SideSnapshot
	}{{"eastbound", s.East}, {"westbound", s.West}} {
		if d.name == "westbound" && d.s.In.Packets+d.s.Generated.Packets+d.s.Out.Packets == 0 {
			continue
		}
		var why []string
		for _, r := range reasonNames {
			if t, ok := d.s.Dropped[r]; ok {
				why = append(why, fmt.Sprintf("%s %d", r, t.Packets))
			}
		}
		drops := fmt.Sprint(d.s.DroppedPackets())
		if len(why) > 0 {
			drops += " (" + strings.Join(why, ", ") + ")"
		}
		fmt.Fprintf(w, "%s %s: in %d (%d B) generated %d out %d (%d B) dropped %s\n", stage, d.name,
			d.s.In.Packets, d.s.In.Bytes, d.s.Generated.Packets, d.s.Out.Packets, d.s.Out.Bytes, drops)
	}
}

// MarshalJSON is the snapshot's JSON form, with a balanced flag per direction.
func (s Snapshot) MarshalJSON() ([]byte, error) {
	type side struct {
		SideSnapshot
		Balanced bool `json:"balanced"`
	}
	return json.Marshal(struct {
		East side `json:"eastbound"`
		West side `json:"westbound"`
	}{side{s.East, s.East.Balanced()}, side{s.West, s.West.Balanced()}})
}
