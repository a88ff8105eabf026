package sshexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"
)

// ptyChan is one command running on a PTY of a connection, its output
// read in the background. It is used by one goroutine at a time.
type ptyChan struct {
	sess   *ssh.Session
	stdin  io.WriteCloser
	chunks <-chan []byte // closed when the output ends
	stop   chan struct{}
}

// openPTY starts cmd on a new PTY (echo off, C locale asked by cmd
// itself) of client, each request bounded by step.
func openPTY(ctx context.Context, client *ssh.Client, cmd string, step time.Duration) (*ptyChan, error) {
	stepCtx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	sess, err := (&Session{client: client}).newSession(stepCtx)
	if err != nil {
		return nil, err
	}
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err := errors.Join(err1, err2); err != nil {
		sess.Close()
		return nil, unreachable(err)
	}
	select {
	case err := <-startOnPTY(sess, cmd):
		if err != nil {
			sess.Close()
			return nil, unreachable(err)
		}
	case <-stepCtx.Done():
		sess.Close()
		return nil, unreachable(fmt.Errorf("%w: %w", ErrStepTimeout, stepCtx.Err()))
	}
	stop := make(chan struct{})
	return &ptyChan{sess: sess, stdin: stdin, chunks: pump(stdout, stop), stop: stop}, nil
}

// startOnPTY asks sess for a PTY (echo off) and starts cmd on it, in the
// background: a stalled host answers no request, so the caller bounds the
// wait for the result on the channel returned.
func startOnPTY(sess *ssh.Session, cmd string) <-chan error {
	started := make(chan error, 1)
	go func() {
		modes := ssh.TerminalModes{ssh.ECHO: 0, ssh.TTY_OP_ISPEED: 38400, ssh.TTY_OP_OSPEED: 38400}
		if err := sess.RequestPty("dumb", 24, 200, modes); err != nil {
			started <- err
			return
		}
		started <- sess.Start(cmd)
	}()
	return started
}

// pump sends what r reads, chunk by chunk, on the channel returned, until
// r ends or stop is closed; then it closes the channel.
func pump(r io.Reader, stop <-chan struct{}) <-chan []byte {
	chunks := make(chan []byte)
	go func() {
		defer close(chunks)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				select {
				case chunks <- append([]byte(nil), buf[:n]...):
				case <-stop:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return chunks
}

// ending says why converse stopped.
type ending int

const (
	endDone    ending = iota + 1 // feed said it is done
	endEOF                       // the output ended
	endTimeout                   // a step passed without output that let feed go on
	endBroken                    // ctx ended or an answer could not be written (err says which)
)

// converse hands every chunk of p's output to feed and writes feed's
// answers, until feed is done, the output ends, or step passes without a
// chunk. Answers are cleared once written.
func (p *ptyChan) converse(ctx context.Context, step time.Duration, feed func([]byte) (answer []byte, done bool)) (ending, error) {
	timer := time.NewTimer(step)
	defer timer.Stop()
	for {
		select {
		case b, ok := <-p.chunks:
			if !ok {
				return endEOF, nil
			}
			answer, done := feed(b)
			if answer != nil {
				_, err := p.stdin.Write(answer)
				clear(answer)
				if err != nil {
					return endBroken, unreachable(err)
				}
			}
			if done {
				return endDone, nil
			}
			timer.Reset(step)
		case <-timer.C:
			return endTimeout, ErrStepTimeout
		case <-ctx.Done():
			return endBroken, ctx.Err()
		}
	}
}

// write sends b to the command's input.
func (p *ptyChan) write(b []byte) error {
	if _, err := p.stdin.Write(b); err != nil {
		return unreachable(err)
	}
	return nil
}

// exit waits, at most step, for the command's exit status once its
// output ended; known is false when the host did not report one.
func (p *ptyChan) exit(step time.Duration) (status int, known bool) {
	done := make(chan error, 1)
	go func() { done <- p.sess.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		switch {
		case err == nil:
			return 0, true
		case errors.As(err, &ee):
			return ee.ExitStatus(), true
		}
	case <-time.After(step):
	}
	return 0, false
}

// close ends the command's channel.
func (p *ptyChan) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.sess.Close()
}
