package main

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is a child process in a process group of its own, so stopping it
// stops whatever it started too (`sluice run` runs git for file:// fetches),
// and a Ctrl-C meant for the demo reaches the children only through the
// demo's own, orderly shutdown.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *tail
	done chan struct{}
	err  error // the exit error, once done is closed

	stopOnce sync.Once
	stopErr  error
}

// startProc starts path with args; its output goes to logs (kept bounded
// for error messages) and to also, if not nil.
func startProc(name string, also io.Writer, path string, args ...string) (*proc, error) {
	p := &proc{name: name, logs: &tail{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	var w io.Writer = p.logs
	if also != nil {
		w = io.MultiWriter(p.logs, also)
	}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	p.cmd.SysProcAttr = procAttr()
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Exited is closed when the process has ended.
func (p *proc) Exited() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the process group, waits up to grace, then kills
// the group, and finally checks that nothing of the group is left. It may
// be called more than once.
func (p *proc) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid // Setpgid: the group has the leader's id
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Children that outlived the leader (a git fetch in flight).
		if groupAlive(pgid) {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		p.stopErr = waitGroupGone(pgid, 5*time.Second)
		if p.stopErr != nil {
			p.stopErr = fmt.Errorf("%s: %w", p.name, p.stopErr)
		}
	})
	return p.stopErr
}

// waitGroupGone waits until no process of the group exists any more.
func waitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if !groupAlive(pgid) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process group %d still has processes after SIGKILL", pgid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns the last output of the process.
func (p *proc) Logs() string { return p.logs.String() }

// tail keeps the last 64 KiB written: a failure wants the last lines.
type tail struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const tailBytes = 64 << 10

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(b)
	if over := t.buf.Len() - tailBytes; over > 0 {
		t.buf.Next(over)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
