// Package returnpath carries westbound frames (replies) between adjacent stages of a plain
// shell pipeline.
//
// Two adjacent stdpkt stages share a pipe: the west one's stdout is the east one's stdin, and
// both see the same pipe identity (fstat: device and inode). The west stage listens on an
// abstract Unix socket named after its stdout pipe; the east stage connects to the socket
// named after its stdin pipe. Each side checks, with SO_PEERCRED and /proc/PID/fd, that the
// other process holds that very pipe, so nothing else can inject into a chain or listen in.
// The connection carries westbound frames, east to west, in the stream format.
package returnpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotPipe is returned when a file is not a pipe, so no neighbour can be found through it.
var ErrNotPipe = errors.New("not a pipe")

// Pipe identifies a pipe as both its ends see it.
type Pipe struct {
	Dev, Ino uint64
}

// PipeOf returns the identity of f's pipe, or ErrNotPipe.
func PipeOf(f *os.File) (Pipe, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return Pipe{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return Pipe{}, ErrNotPipe
	}
	return Pipe{Dev: st.Dev, Ino: st.Ino}, nil
}

// socketName is the abstract socket of the stage west of the pipe.
func (p Pipe) socketName() string {
	return fmt.Sprintf("@stdpkt/return/%d/%d", p.Dev, p.Ino)
}

// Listener waits for the east neighbour of a pipe.
type Listener struct {
	pipe Pipe
	ln   *net.UnixListener
	// Refused is called for every connection that does not hold the pipe; may be nil.
	Refused func(error)
}

// Listen listens for the stage that reads the pipe f (our stdout).
func Listen(f *os.File) (*Listener, error) {
	p, err := PipeOf(f)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.socketName(), Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("return path: listening on %s: %w", p.socketName(), err)
	}
	return &Listener{pipe: p, ln: ln}, nil
}

// Accept returns the first connection from the process holding the other end of the pipe,
// refusing every other, then stops listening. It returns when ctx is done.
func (l *Listener) Accept(ctx context.Context) (*net.UnixConn, error) {
	defer l.ln.Close()
	stop := context.AfterFunc(ctx, func() { l.ln.Close() })
	defer stop()
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("return path: accept: %w", err)
		}
		if err := checkPeer(c, l.pipe); err != nil {
			// A stage of ours that connected and then died (its east neighbour went away:
			// | head) no longer holds the pipe either; that is no intruder worth a word.
			// Asked before we hang up, which may be what ends a process.
			var nh *notHolderError
			quiet := errors.As(err, &nh) && exiting(nh.pid)
			c.Close()
			if l.Refused != nil && !quiet {
				l.Refused(err)
			}
			continue
		}
		return c, nil
	}
}

// Close stops listening.
func (l *Listener) Close() error { return l.ln.Close() }

// Dial connects to the stage that writes the pipe f (our stdin), trying until patience runs
// out: that stage may still be starting. It returns ErrNotPipe when f is not a pipe and an
// error wrapping syscall.ECONNREFUSED when nothing listens: the writer is not a stdpkt stage.
func Dial(ctx context.Context, f *os.File, patience time.Duration) (*net.UnixConn, error) {
	p, err := PipeOf(f)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(patience)
	addr := &net.UnixAddr{Name: p.socketName(), Net: "unix"}
	for {
		c, err := net.DialUnix("unix", nil, addr)
		if err == nil {
			if err := checkPeer(c, p); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("return path: no stdpkt stage listens on %s: %w", p.socketName(), err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// checkPeer verifies that the process at the other end of c holds pipe p, and runs as us.
func checkPeer(c *net.UnixConn, p Pipe) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return fmt.Errorf("return path: SO_PEERCRED: %w", credErr)
	}
	if int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("return path: refused process %d of uid %d: not our uid %d", cred.Pid, cred.Uid, os.Getuid())
	}
	if !holdsPipe(int(cred.Pid), p) {
		return &notHolderError{pid: int(cred.Pid), ino: p.Ino}
	}
	return nil
}

// notHolderError refuses a process of ours that does not hold the pipe.
type notHolderError struct {
	pid int
	ino uint64
}

func (e *notHolderError) Error() string {
	return fmt.Sprintf("return path: refused process %d: it does not hold pipe %d", e.pid, e.ino)
}

// exiting reports whether process pid is gone or on its way out: no longer in /proc, a
// zombie, or flagged PF_EXITING (its descriptors are being closed).
func exiting(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// pid (comm) state ppid pgrp session tty_nr tpgid flags ...; comm may hold anything.
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 7 {
		return false
	}
	if f[0] == "Z" || f[0] == "X" {
		return true
	}
	const pfExiting = 0x4
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfExiting != 0
}

// holdsPipe reports whether process pid has pipe p open.
func holdsPipe(pid int, p Pipe) bool {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if fdIsPipe(filepath.Join(dir, e.Name()), p) {
			return true
		}
	}
	return false
}

// fdIsPipe reports whether the /proc/PID/fd/N entry at path is pipe p.
func fdIsPipe(path string, p Pipe) bool {
	target, err := os.Readlink(path)
	if err != nil || target != "pipe:["+strconv.FormatUint(p.Ino, 10)+"]" {
		return false
	}
	var st unix.Stat_t
	return unix.Stat(path, &st) == nil && st.Dev == p.Dev
}

// IsRefused reports whether err says nothing listened: the neighbour is not a stdpkt stage.
func IsRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// Open opens an explicit westbound endpoint: a path (file or FIFO), "tcp:HOST:PORT" to
// connect, or "tcp-listen:[HOST]:PORT" to accept one connection. forWrite says which way the
// frames go.
func Open(ctx context.Context, spec string, forWrite bool) (ReadWriteCloser, error) {
	switch {
	case strings.HasPrefix(spec, "tcp:"):
		var d net.Dialer
		var c net.Conn
		var err error
		for range 200 { // the other host's stage may still be starting: try for about 10 s
			c, err = d.DialContext(ctx, "tcp", strings.TrimPrefix(spec, "tcp:"))
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		return c, nil
	case strings.HasPrefix(spec, "tcp-listen:"):
		ln, err := net.Listen("tcp", strings.TrimPrefix(spec, "tcp-listen:"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", spec, err)
		}
		defer ln.Close()
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		c, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("%s: accept: %w", spec, err)
		}
		return c, nil
	case forWrite:
		f, err := os.OpenFile(spec, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, err
		}
		return f, nil
	default:
		return os.Open(spec)
	}
}

// ReadWriteCloser is what Open returns.
type ReadWriteCloser interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
	Close() error
}

// NeighborIsStage reports whether a stdpkt stage holds the other end of pipe f: another
// process with the pipe open whose command name starts with "stdpkt-". A holder that is
// still a fork of our shell (same executable as our parent: a pipeline stage not yet
// exec'd) is waited for, up to patience, and so is our parent while it holds the pipe at a
// descriptor of its own: a shell forking a pipeline does that until it has forked the
// stage at the other end. A parent that holds the pipe at our descriptor (f's) handed it
// to us: it is a wrapper that forked us (time, timeout, strace) and waits for us, and will
// never exec into a stage. A source uses it at the end of a replay to decide whether
// replies may still come home, and every stage when its input ends.
func NeighborIsStage(f *os.File, patience time.Duration) bool {
	p, err := PipeOf(f)
	if err != nil {
		return false
	}
	parent := os.Getppid()
	shell, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(parent), "exe"))
	handedDown := filepath.Join("/proc", strconv.Itoa(parent), "fd", strconv.Itoa(int(f.Fd())))
	deadline := time.Now().Add(patience)
	for {
		// Nobody but us holding it is a moment in an exec, as is an exe that is already a
		// stage while the comm is still the shell's: wait for those too.
		pids := holders(p)
		forks := len(pids) == 0
		for _, pid := range pids {
			dir := filepath.Join("/proc", strconv.Itoa(pid))
			comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
			exe, _ := os.Readlink(filepath.Join(dir, "exe"))
			if strings.HasPrefix(string(comm), "stdpkt-") || strings.HasPrefix(filepath.Base(exe), "stdpkt-") {
				return true
			}
			wrapper := pid == parent && fdIsPipe(handedDown, p)
			if !wrapper && (exe == "" || shell != "" && exe == shell) { // unreadable: mid-exec
				forks = true
			}
		}
		if !forks || time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holders returns the processes other than us that hold pipe p.
func holders(p Pipe) []int {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && pid != self && holdsPipe(pid, p) {
			pids = append(pids, pid)
		}
	}
	return pids
}
