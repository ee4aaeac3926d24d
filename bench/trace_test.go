package bench

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTraces(t *testing.T) {
	for _, tr := range Traces(FullSizes()) {
		if !strings.Contains(tr.Spec, "count=") || tr.Packets <= 0 {
			t.Errorf("%+v", tr)
		}
		if tr.Name == "flows" && !strings.Contains(tr.Spec, "flows=1000000,count=1000000") {
			t.Errorf("flows trace %q: want a million one-packet flows", tr.Spec)
		}
	}
	full, quick := Traces(FullSizes()), Traces(QuickSizes())
	for i := range full {
		if full[i].File() == quick[i].File() {
			t.Errorf("%s: the full and the quick trace share file %s", full[i].Name, full[i].File())
		}
	}
}

func TestEnsureTrace(t *testing.T) {
	bin, dir := t.TempDir(), filepath.Join(t.TempDir(), "traces")
	// A stand-in stdpkt-src that writes its arguments and counts its calls.
	calls := filepath.Join(bin, "calls")
	script := "#!/bin/sh\necho x >> " + calls + "\necho \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "stdpkt-src"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tr := Trace{Name: "small", Spec: "udp,count=5", Packets: 5, FrameBytes: 64}
	for range 2 {
		path, err := EnsureTrace(context.Background(), bin, dir, tr)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || string(b) != "-q --timestamps keep --gen udp,count=5\n" {
			t.Errorf("trace %q (%v)", b, err)
		}
	}
	if b, _ := os.ReadFile(calls); string(b) != "x\n" {
		t.Errorf("stdpkt-src called %d times, want once: the trace is kept", strings.Count(string(b), "x"))
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the trace directory, want the trace alone", len(entries))
	}

	if err := os.WriteFile(filepath.Join(bin, "stdpkt-src"), []byte("#!/bin/sh\necho half; echo bad spec >&2; exit 2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := EnsureTrace(context.Background(), bin, dir, Trace{Name: "large", Spec: "bad"})
	if err == nil || !strings.Contains(err.Error(), "bad spec") {
		t.Errorf("error %v: want stdpkt-src's message", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files in the trace directory: a failed trace was left behind", len(entries))
	}
}
