package sshexec

import (
	"context"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/rotord/rotord/rotation"
)

// logonPool shares a Reach's logon connection to a host among the
// sessions open on it at the same time: the verifying login of a
// rotation runs its su on a new channel of the connection its lifeline
// holds, instead of authenticating the logon account to sshd again (a
// password hash on the host for a password logon). Each session is
// still a new channel, a new process tree, and su authenticates the
// target through PAM afresh. A connection is closed when its last
// session closes. It is safe for concurrent use.
type logonPool struct {
	mu    sync.Mutex
	conns map[string]*pooledConn // by host address
}

type pooledConn struct {
	client *ssh.Client
	refs   int
}

// get returns a live connection to addr from the pool, or dials one with
// dial and offers it to the pool. release must be called once the
// session using it ends.
func (p *logonPool) get(ctx context.Context, addr string, step time.Duration, dial func() (*ssh.Client, error)) (*ssh.Client, func(), error) {
	p.mu.Lock()
	pc := p.conns[addr]
	if pc != nil {
		pc.refs++
	}
	p.mu.Unlock()
	if pc != nil {
		if alive(ctx, pc.client, step) {
			return pc.client, p.releaser(addr, pc), nil
		}
		// Broken (the host went away, the lifeline's connection died):
		// no credential was sent on it; leave it to its holders and dial.
		p.mu.Lock()
		if p.conns[addr] == pc {
			delete(p.conns, addr)
		}
		p.mu.Unlock()
		p.releaser(addr, pc)()
	}
	c, err := dial()
	if err != nil {
		return nil, nil, err
	}
	pc = &pooledConn{client: c, refs: 1}
	p.mu.Lock()
	if p.conns == nil {
		p.conns = map[string]*pooledConn{}
	}
	if _, taken := p.conns[addr]; !taken {
		p.conns[addr] = pc
	}
	p.mu.Unlock()
	return c, p.releaser(addr, pc), nil
}

// releaser returns the function that gives up one use of pc, closing it
// with its last.
func (p *logonPool) releaser(addr string, pc *pooledConn) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			pc.refs--
			last := pc.refs == 0
			if last && p.conns[addr] == pc {
				delete(p.conns, addr)
			}
			p.mu.Unlock()
			if last {
				pc.client.Close()
			}
		})
	}
}

// alive reports whether c answers a keepalive request within step.
func alive(ctx context.Context, c *ssh.Client, step time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		done <- err
	}()
	t := time.NewTimer(step)
	defer t.Stop()
	select {
	case err := <-done:
		return err == nil
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// sharedLogon opens, or shares, the logon connection of r to h.
func (r *Reach) sharedLogon(ctx context.Context, h rotation.Host, logon string) (*ssh.Client, string, func(), error) {
	addr := h.Addr(r.d.cfg.DefaultPort)
	c, release, err := r.pool.get(ctx, addr, r.d.cfg.StepTimeout, func() (*ssh.Client, error) {
		c, _, err := r.d.dialLogon(ctx, h, logon, r.path.Auth)
		return c, err
	})
	return c, addr, release, err
}
