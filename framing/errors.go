package framing

import (
	"errors"
	"fmt"
)

// ErrEmptyStream is returned when the input ends before the first byte of a header.
var ErrEmptyStream = errors.New("empty stream: no pcap or pcapng header")

// FormatError is a malformed stream: what is wrong and where.
type FormatError struct {
	Offset int64 // byte offset of the block or record at fault
	Packet int64 // number of packets read before it (the bad one is Packet+1)
	Msg    string
	Err    error // io.ErrUnexpectedEOF for truncated input, else nil
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("%s at byte offset %d (after packet %d)", e.Msg, e.Offset, e.Packet)
}

// Unwrap returns io.ErrUnexpectedEOF for truncated input.
func (e *FormatError) Unwrap() error { return e.Err }
