package books

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestBalance(t *testing.T) {
	var b Books
	b.East().In.Add(10, 640)
	b.East().Generated.Add(2, 84)
	b.East().Out.Add(9, 600)
	b.East().Drop(Rule, 2, 84)
	b.East().Drop(Malformed, 1, 40)
	snap := b.Snapshot()
	if err := snap.Check(); err != nil {
		t.Fatal(err)
	}
	b.West().In.Add(1, 60)
	if err := b.Snapshot().Check(); err == nil || !strings.Contains(err.Error(), "westbound books do not balance: in 1") {
		t.Fatalf("unbalanced westbound: %v", err)
	}
	var sb strings.Builder
	snap.Format(&sb, "stdpkt-fw")
	if got := sb.String(); got != "stdpkt-fw eastbound: in 10 (640 B) generated 2 out 9 (600 B) dropped 3 (rule 2, malformed 1)\n" {
		t.Errorf("Format: %q", got)
	}
	j, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(j), `"rule":{"packets":2,"bytes":84}`) || !strings.Contains(string(j), `"balanced":true`) {
		t.Errorf("JSON: %s", j)
	}
}
