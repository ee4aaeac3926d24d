// Package nf is the runner every stdpkt command shares: common flags, profiling, signals,
// the read-process-write loop with flush-when-idle, the books on exit, and exit statuses.
package nf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/profile"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/stdpkt/stdpkt/books"
	"github.com/stdpkt/stdpkt/framing"
)

// Exit statuses, the same for every command.
const (
	ExitOK    = 0 // input ended, or stopped by SIGINT/SIGTERM, or downstream went away
	ExitError = 1 // a malformed stream, an I/O error, a runtime failure
	ExitUsage = 2 // bad flags, arguments or rule files: nothing was processed
)

// BatchSize is how many packets a stage reads per call.
const BatchSize = 256

// Options are the flags every command shares.
type Options struct {
	Name          string
	Profile       string
	StatsInterval time.Duration
	StatsJSON     string
	Verbose       bool
	Quiet         bool
	EastIn        string // explicit source of westbound frames; "": the stage after this one
	WestOut       string // explicit destination of westbound frames; "": the stage before this one
}

// Flags returns the common flags, each also settable from an STDPKT_ environment variable.
func Flags() []cli.Flag {
	const cat = "Common"
	return []cli.Flag{
		&cli.StringFlag{Name: "profile", Category: cat, EnvVars: []string{"STDPKT_PROFILE"},
			Usage: "write a `KIND` profile (cpu, mem, mutex, block, trace) for go tool pprof; its path is printed on exit"},
		&cli.DurationFlag{Name: "stats-interval", Category: cat, EnvVars: []string{"STDPKT_STATS_INTERVAL"},
			Usage: "print the counters on stderr every `DURATION` (default: every second when stderr is a terminal)"},
		&cli.StringFlag{Name: "stats-json", Category: cat, EnvVars: []string{"STDPKT_STATS_JSON"},
			Usage: "write the final counters as JSON to `FILE` on exit"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Category: cat, EnvVars: []string{"STDPKT_VERBOSE"},
			Usage: "say more on stderr"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Category: cat, EnvVars: []string{"STDPKT_QUIET"},
			Usage: "print nothing on stderr but errors"},
	}
}

// OptionsFrom reads the common flags.
func OptionsFrom(c *cli.Context) Options {
	return Options{
		Name:          c.App.Name,
		Profile:       c.String("profile"),
		StatsInterval: c.Duration("stats-interval"),
		StatsJSON:     c.String("stats-json"),
		Verbose:       c.Bool("verbose"),
		Quiet:         c.Bool("quiet"),
		EastIn:        c.String("east-in"),
		WestOut:       c.String("west-out"),
	}
}

// UsageError marks err as the user's mistake (exit status 2).
func UsageError(err error) error { return &usageError{err} }

type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// Stage is a running command: its books and the hooks the runner calls.
type Stage struct {
	Books books.Books
	// Flush writes out whatever the stage holds; called when it is stopped by a signal.
	Flush func() error
	// Report writes summary lines after the books (rates, latency); may be nil.
	Report func(w io.Writer)
	// Dump writes state for SIGUSR1 after the books (rule counters, connections); may be nil.
	Dump func(w io.Writer)
	// Extra returns more fields for --stats-json; may be nil.
	Extra func() map[string]any
	// Progress says how far a replay has come, for the stats line; may be nil.
	Progress func() string

	// writers are the stage's outputs, by the direction of what they carry (Writes).
	writersMu sync.Mutex
	writers   [2][]interface{ Lost() framing.Tally }

	// batch[dir] is held by the pump of that direction while it handles and writes a
	// batch, so a signal stops the stage between batches and the books it prints are
	// whole. One lock per direction: a pump blocked writing east must not stop the west
	// pump draining the replies its neighbour is blocked on.
	batch [2]sync.Mutex
}

// Writes registers w as an output of packets travelling in dir, counted Out when written
// to it. At exit, what w took but never wrote out (its destination failed, or was never
// flushed) is moved from Out to dropped (output), so the books say what really left.
// w is a *framing.Writer or anything else that can say what it lost, like *Return.
func (s *Stage) Writes(dir books.Dir, w interface{ Lost() framing.Tally }) {
	s.writersMu.Lock()
	defer s.writersMu.Unlock()
	s.writers[dir] = append(s.writers[dir], w)
}

// settle corrects the books for what the registered outputs lost.
func (s *Stage) settle() {
	s.writersMu.Lock()
	defer s.writersMu.Unlock()
	for d, ws := range s.writers {
		for _, w := range ws {
			if l := w.Lost(); l.Packets > 0 {
				s.Books.Dir[d].Retract(books.Output, l.Packets, l.Bytes)
			}
		}
	}
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// RefuseTerminal returns an error when binary packets would go to a terminal.
func RefuseTerminal(f *os.File) error {
	if IsTerminal(f) {
		return UsageError(errors.New("refusing to write binary packets to a terminal: pipe them on (| stdpkt-dump, | tcpdump -nr -, | stdpkt-sink -w FILE)"))
	}
	return nil
}

// Batch runs f as one batch travelling in dir: a signal stops the stage before or after it,
// never during. The pumps do this themselves; stages that make their own packets (a
// generator, a capture) call it.
func (s *Stage) Batch(dir books.Dir, f func() error) error {
	s.batch[dir].Lock()
	defer s.batch[dir].Unlock()
	return f()
}

// Pump reads eastbound batches from r, gives each to handle, and calls flush whenever the
// input is drained, so batches are full under load and an idle chain adds no latency. It
// returns nil at the end of the input and stops between batches when ctx is cancelled.
func (s *Stage) Pump(ctx context.Context, r *framing.Reader, handle func([]framing.Packet) error, flush func() error) error {
	return s.pump(ctx, books.East, r, handle, flush)
}

func (s *Stage) pump(ctx context.Context, dir books.Dir, r *framing.Reader, handle func([]framing.Packet) error, flush func() error) error {
	pkts := make([]framing.Packet, BatchSize)
	for ctx.Err() == nil {
		n, err := r.Read(pkts)
		if n > 0 {
			s.batch[dir].Lock()
			herr := handle(pkts[:n])
			if herr == nil && r.Drained() {
				herr = flush()
			}
			s.batch[dir].Unlock()
			if herr != nil {
				return herr
			}
		}
		if err == io.EOF {
			return flush()
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return errors.Join(err, ferr)
			}
			return err
		}
	}
	return flush()
}

// Run runs body under the common options and returns the exit status: it starts profiling,
// stops on SIGINT/SIGTERM (flush, books, exit), answers SIGUSR1 with the books and the
// stage's state, prints the stats line, and ends quietly when downstream has gone (EPIPE).
func Run(opts Options, s *Stage, body func(ctx context.Context) error) int {
	signal.Ignore(syscall.SIGPIPE) // a write to a closed pipe returns EPIPE instead of killing us
	growPipe(os.Stdin)
	growPipe(os.Stdout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var prof interface{ Stop() }
	var profDir string
	if opts.Profile != "" {
		mode, ok := profileModes[opts.Profile]
		if !ok {
			fmt.Fprintf(os.Stderr, "%s: --profile %q: want one of cpu, mem, mutex, block, trace\n", opts.Name, opts.Profile)
			return ExitUsage
		}
		profDir = filepath.Join(os.TempDir(), fmt.Sprintf("%s-%d", opts.Name, os.Getpid()))
		prof = profile.Start(mode, profile.ProfilePath(profDir), profile.Quiet, profile.NoShutdownHook)
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	done := make(chan error, 1)
	go func() { done <- body(ctx) }()

	interval := opts.StatsInterval
	live := interval == 0 && !opts.Quiet && IsTerminal(os.Stderr)
	if live {
		interval = time.Second
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}

	var err error
	var lastRate rate
	stopping := false
	var stopped <-chan struct{}
loop:
	for {
		select {
		case err = <-done:
			break loop
		case sig := <-sigs:
			if sig == syscall.SIGUSR1 {
				s.Books.Snapshot().Format(os.Stderr, opts.Name)
				if s.Dump != nil {
					s.Dump(os.Stderr)
				}
				continue
			}
			if !stopping {
				stopping = true
				cancel()
				stopped = s.stopBetweenBatches()
			}
		case <-stopped:
			// The pumps may be blocked reading input that never comes: they hold no packet,
			// so flush and stop without waiting for them.
			if s.Flush != nil {
				err = s.Flush()
			}
			break loop
		case <-tick:
			line := s.statsLine(&lastRate)
			if live {
				fmt.Fprintf(os.Stderr, "\r%s: %s\x1b[K", opts.Name, line)
			} else {
				fmt.Fprintf(os.Stderr, "%s: %s\n", opts.Name, line)
			}
		}
	}
	if live {
		fmt.Fprint(os.Stderr, "\r\x1b[K")
	}
	if prof != nil {
		prof.Stop()
		if !opts.Quiet {
			fmt.Fprintf(os.Stderr, "%s: %s profile in %s\n", opts.Name, opts.Profile, profDir)
		}
	}
	status := ExitOK
	var usage *usageError
	switch {
	case err == nil, errors.Is(err, syscall.EPIPE), errors.Is(err, context.Canceled):
	case errors.As(err, &usage):
		fmt.Fprintf(os.Stderr, "%s: %v\n", opts.Name, err)
		return ExitUsage
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", opts.Name, err)
		status = ExitError
	}
	s.settle()
	snap := s.Books.Snapshot()
	if !opts.Quiet {
		snap.Format(os.Stderr, opts.Name)
		if s.Report != nil {
			s.Report(os.Stderr)
		}
	}
	if opts.StatsJSON != "" {
		if jerr := writeJSON(opts, s, snap); jerr != nil {
			fmt.Fprintf(os.Stderr, "%s: --stats-json: %v\n", opts.Name, jerr)
			status = max(status, ExitError)
		}
	}
	return status
}

// pipeSize is what stages ask of the pipes between them: a 64 KiB pipe holds under 700
// small frames, so the two processes would take turns at every few hundred packets.
const pipeSize = 1 << 20

// growPipe enlarges f's pipe buffer when f is a pipe; failing that (an unprivileged user
// over /proc/sys/fs/pipe-max-size) the default is kept.
func growPipe(f *os.File) {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return
	}
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, pipeSize)
}

// stopBetweenBatches takes the batch lock for good, so no pump starts another batch, and
// says when it has it; after a second it says so anyway, since a pump blocked writing to a
// stalled neighbour would otherwise hold the stage forever.
func (s *Stage) stopBetweenBatches() <-chan struct{} {
	got := make(chan struct{})
	go func() {
		s.batch[books.East].Lock()
		s.batch[books.West].Lock()
		close(got)
	}()
	done := make(chan struct{})
	go func() {
		select {
		case <-got:
		case <-time.After(time.Second):
		}
		close(done)
	}()
	return done
}

var profileModes = map[string]func(*profile.Profile){
	"cpu": profile.CPUProfile, "mem": profile.MemProfile, "mutex": profile.MutexProfile,
	"block": profile.BlockProfile, "trace": profile.TraceProfile,
}

// rate remembers the last stats line's totals, for the rates of the next.
type rate struct {
	at            time.Time
	packets, bits uint64
}

func (s *Stage) statsLine(last *rate) string {
	snap := s.Books.Snapshot()
	e := snap.East
	now := time.Now()
	pk, bits := e.Out.Packets, e.Out.Bytes*8
	line := ""
	if secs := now.Sub(last.at).Seconds(); !last.at.IsZero() && secs > 0 {
		line = fmt.Sprintf("%s, %.3f Gbit/s | ", PPS(float64(pk-last.packets)/secs), float64(bits-last.bits)/secs/1e9)
	}
	*last = rate{at: now, packets: pk, bits: bits}
	line += fmt.Sprintf("in %d out %d dropped %d", e.In.Packets+e.Generated.Packets, e.Out.Packets, e.DroppedPackets())
	if w := snap.West; w.In.Packets+w.Generated.Packets > 0 {
		line += fmt.Sprintf(" | westbound in %d out %d dropped %d", w.In.Packets+w.Generated.Packets, w.Out.Packets, w.DroppedPackets())
	}
	if s.Progress != nil {
		if p := s.Progress(); p != "" {
			line += " | " + p
		}
	}
	return line
}

// PPS formats a packet rate with a unit that suits it.
func PPS(r float64) string {
	switch {
	case r >= 1e5:
		return fmt.Sprintf("%.3f Mpps", r/1e6)
	case r >= 100:
		return fmt.Sprintf("%.1f kpps", r/1e3)
	}
	return fmt.Sprintf("%.0f pps", r)
}

func writeJSON(opts Options, s *Stage, snap books.Snapshot) error {
	doc := map[string]any{"stage": opts.Name, "books": snap, "process": processUsage()}
	if s.Extra != nil {
		for k, v := range s.Extra() {
			doc[k] = v
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(opts.StatsJSON, append(b, '\n'), 0o644)
}

// processUsage is what the stage's process has used so far: its peak resident memory and
// its CPU time, for --stats-json (benchmarks and the resource-bound tests read them).
func processUsage() map[string]any {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return nil
	}
	secs := func(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }
	return map[string]any{
		"peak_rss_bytes": peakRSS(ru.Maxrss * 1024),
		"cpu_user_s":     secs(ru.Utime),
		"cpu_sys_s":      secs(ru.Stime),
	}
}

// peakRSS returns the process's resident high-water mark: VmHWM, which belongs to this
// program's own memory map. getrusage's maxrss (the fallback) also remembers the process
// it was forked from before the exec, so a stage started by a large parent would report
// the parent's size.
func peakRSS(fallback int64) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fallback
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb); err == nil {
				return kb * 1024
			}
		}
	}
	return fallback
}

// helpFooter ends every command's description: what every stdpkt command shares.
const helpFooter = `

Environment:
   STDPKT_PROFILE, STDPKT_STATS_INTERVAL, STDPKT_STATS_JSON, STDPKT_VERBOSE, STDPKT_QUIET,
   STDPKT_FORMAT, STDPKT_EAST_IN, STDPKT_WEST_OUT set the flags of the same names
   (booleans: true or false).

Exit status:
   0  the input ended, a signal (SIGINT, SIGTERM) stopped it, or downstream went away
   1  a runtime error: a malformed stream (the message gives the byte offset), an I/O error
   2  a usage error: bad flags, arguments or rule files; nothing was processed

Signals: SIGINT and SIGTERM flush, print the books and exit; SIGUSR1 prints the books (and a
stage's rule counters and connections) and carries on. Bash completion of the flags:
   source scripts/stdpkt-completion.bash (from the stdpkt repository)`

// isStage reports whether app takes the flags every stage shares, which the help footer
// describes (with the signals and statuses of the runner); a tool such as stdpkt-bench
// does not.
func isStage(app *cli.App) bool {
	for _, f := range app.Flags {
		if slices.Contains(f.Names(), "stats-json") {
			return true
		}
	}
	return false
}

// Main runs a cli.App and exits with the documented statuses: flag errors are usage errors.
func Main(app *cli.App) {
	// urfave/cli's default version flag takes -v, which is --verbose here; the flag is a
	// package variable of urfave/cli, so it is set once here before any app runs.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
	app.EnableBashCompletion = true
	app.HideHelpCommand = true // no subcommands: "help" as one would only confuse
	app.UsageText = app.Name + " [options] " + app.ArgsUsage
	if isStage(app) {
		app.Description += helpFooter
	}
	app.ExitErrHandler = func(*cli.Context, error) {}
	app.OnUsageError = func(c *cli.Context, err error, _ bool) error { return UsageError(err) }
	err := app.Run(os.Args)
	var coder cli.ExitCoder
	switch {
	case err == nil:
		os.Exit(ExitOK)
	case errors.As(err, &coder):
		if msg := err.Error(); msg != "" {
			fmt.Fprintf(os.Stderr, "%s: %s\n", app.Name, msg)
		}
		os.Exit(coder.ExitCode())
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		os.Exit(ExitUsage)
	}
}

// Interfaces returns the command's positional arguments as interface names. A flag among
// them is an error: urfave/cli stops reading flags at the first argument, so
// `stdpkt-sink eth1 -w x` would otherwise take "-w" for an interface.
func Interfaces(c *cli.Context) ([]string, error) {
	names := c.Args().Slice()
	for _, n := range names {
		if strings.HasPrefix(n, "-") {
			return nil, UsageError(fmt.Errorf("%s: flags go before the interface names (%s [flags] %s)", n, c.App.Name, strings.Join(names[:1], " ")))
		}
	}
	return names, nil
}

// OpenError classifies an error opening an input or output before anything ran: a missing
// thing the user named is a usage error, anything else (a missing privilege) a runtime one.
func OpenError(err error, usage bool) error {
	if usage {
		return UsageError(err)
	}
	return cli.Exit(err.Error(), ExitError)
}

// Exit turns Run's status into the error a cli.Action returns.
func Exit(status int) error {
	if status == ExitOK {
		return nil
	}
	return cli.Exit("", status)
}
