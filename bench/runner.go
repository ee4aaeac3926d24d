package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Sample is what one run of a pipeline took.
type Sample struct {
	Seconds    float64 `json:"seconds"`      // wall time
	CPUSeconds float64 `json:"cpu_seconds"`  // user + system time of bash and every process it waited for
	PeakRSSKiB int64   `json:"peak_rss_kib"` // the largest resident set of any of them
}

// Runner runs shell pipelines with bash -o pipefail -c and measures them.
type Runner struct {
	// Env is the environment of every run (nil: this process's); it should put the stdpkt
	// commands first on PATH.
	Env []string
	// Dir is the working directory of every run ("": this process's).
	Dir string
	// Timeout bounds one run (0: none); the whole process group is killed when it expires.
	Timeout time.Duration
}

// stderrLimit bounds how much of a pipeline's stderr is kept for an error message.
const stderrLimit = 4096

// Run runs cmd once, with extra environment variables (NAME=VALUE) added, and returns its
// wall time, CPU time and peak RSS. The CPU time and RSS come from wait4's rusage of the
// bash process, which covers every descendant it waited for (the stages of a pipeline); the
// RSS is the largest single process's, not a sum. A pipeline that fails (pipefail: any
// stage) is an error carrying the end of its stderr.
func (r Runner) Run(ctx context.Context, cmd string, extraEnv ...string) (Sample, error) {
	if r.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.Timeout)
		defer cancel()
	}
	c := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", cmd)
	c.Dir = r.Dir
	if r.Env != nil || len(extraEnv) > 0 {
		env := r.Env
		if env == nil {
			env = os.Environ()
		}
		c.Env = append(append([]string(nil), env...), extraEnv...)
	}
	var stderr tailBuffer
	c.Stderr = &stderr // stdin and stdout: /dev/null
	// A process group of its own, so a timeout or an interrupt kills every stage, not just bash.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second

	start := time.Now()
	err := c.Run()
	wall := time.Since(start)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = ":\n" + msg
		}
		return Sample{}, fmt.Errorf("running %q: %w%s", cmd, err, msg)
	}
	s := Sample{Seconds: wall.Seconds()}
	if ru, ok := c.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		s.PeakRSSKiB = ru.Maxrss // kilobytes on Linux
	}
	return s, nil
}

// tailBuffer keeps the last stderrLimit bytes written to it.
type tailBuffer struct {
	buf       bytes.Buffer
	truncated bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	t.buf.Write(p)
	if over := t.buf.Len() - stderrLimit; over > 0 {
		t.buf.Next(over)
		t.truncated = true
	}
	return n, nil
}

func (t *tailBuffer) String() string {
	if t.truncated {
		return "..." + t.buf.String()
	}
	return t.buf.String()
}
