package bench

import (
	"encoding/json"
	"fmt"
	"io"
)

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the results: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("writing the results: %w", err)
	}
	return nil
}

// ReadJSON reads results WriteJSON wrote.
func ReadJSON(rd io.Reader) (*Results, error) {
	var r Results
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("reading the results: %w", err)
	}
	return &r, nil
}
