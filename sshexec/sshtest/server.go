package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ServerOptions configure an in-process SSH server.
type ServerOptions struct {
	User               string // the one account ("rotuser")
	Password           string // its password; required
	KbdInteractiveOnly bool   // offer keyboard-interactive, not password authentication
	// StallAfterCurrent makes passwd go silent once it has read the current
	// password, as a host that hangs mid-dialogue.
	StallAfterCurrent bool
	// CutCommands ends every command but `true` by closing its channel
	// without an exit status or a word, as when the host's sshd or the
	// connection dies while it starts.
	CutCommands bool
}

// Server is an in-process SSH server for fast tests that need no root: it
// speaks the real SSH protocol, accepts the account's password, runs `true`
// and emulates shadow-utils passwd on a PTY (Debian wording, a minimum
// length of 8 enforced the way pam_pwquality words it). Real programs are
// exercised by the Rig. A Server is safe for concurrent use.
type Server struct {
	opts     ServerOptions
	key      ssh.Signer
	l        net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	password string
	attempts int
	conns    map[net.Conn]bool
	closed   bool
}

// NewServer starts a server on a free loopback port.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.User == "" {
		opts.User = "rotuser"
	}
	if opts.Password == "" {
		return nil, errors.New("sshtest: a password is required")
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	key, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	s := &Server{opts: opts, key: key, l: l, password: opts.Password, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Host returns the server's address as a host name and port.
func (s *Server) Host() (string, int) {
	a := s.l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.l.Addr().String() }

// HostKey returns the server's public host key.
func (s *Server) HostKey() ssh.PublicKey { return s.key.PublicKey() }

// KnownHostsLine returns a known_hosts line approving the server's key.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.key.PublicKey())
}

// Password returns the account's current password.
func (s *Server) Password() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.password
}

// AuthAttempts returns how many password or keyboard-interactive
// authentications the server has seen.
func (s *Server) AuthAttempts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts
}

// Close stops the server and drops its connections.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.l.Close()
	s.wg.Wait()
	return err
}

func (s *Server) checkPassword(user string, pw []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	return user == s.opts.User && string(pw) == s.password
}

var errRefused = errors.New("sshtest: password refused")

func (s *Server) serve() {
	defer s.wg.Done()
	cfg := &ssh.ServerConfig{}
	if s.opts.KbdInteractiveOnly {
		cfg.KeyboardInteractiveCallback = func(m ssh.ConnMetadata, ch ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			ans, err := ch("", "", []string{"Password: "}, []bool{false})
			if err != nil {
				return nil, err
			}
			if len(ans) == 1 && s.checkPassword(m.User(), []byte(ans[0])) {
				return nil, nil
			}
			return nil, errRefused
		}
	} else {
		cfg.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if s.checkPassword(m.User(), pw) {
				return nil, nil
			}
			return nil, errRefused
		}
	}
	cfg.AddHostKey(s.key)
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.handle(c, cfg)
		}()
	}
}

func (s *Server) handle(c net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ch.Close()
			s.session(ch, creqs)
		}()
	}
}

func (s *Server) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	for req := range reqs {
		switch req.Type {
		case "pty-req", "env":
			_ = req.Reply(true, nil)
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			if s.opts.CutCommands && strings.TrimSpace(cmd.Command) != "true" {
				return
			}
			status := s.exec(ch, cmd.Command)
			if status < 0 {
				return // stalled: the client gives up
			}
			b := make([]byte, 4)
			binary.BigEndian.PutUint32(b, uint32(status))
			_, _ = ch.SendRequest("exit-status", false, b)
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// exec runs cmd and returns its exit status, or -1 if it stalled.
func (s *Server) exec(ch ssh.Channel, cmd string) int {
	switch strings.TrimSpace(cmd) {
	case "true", "exit 0":
		return 0
	case "env LC_ALL=C LANG=C passwd":
		return s.passwd(ch)
	default:
		fmt.Fprintf(ch.Stderr(), "sh: 1: %s: not found\n", strconv.Quote(cmd))
		return 127
	}
}

// passwd emulates shadow-utils passwd on a PTY with pam_pwquality's
// minimum length (retry=3).
func (s *Server) passwd(ch ssh.Channel) int {
	r := &lineReader{r: ch}
	say := func(text string) { _, _ = io.WriteString(ch, text) }
	say("Changing password for " + s.opts.User + ".\r\nCurrent password: ")
	cur, err := r.line()
	if err != nil {
		return 1
	}
	if s.opts.StallAfterCurrent {
		_, _ = io.Copy(io.Discard, ch)
		return -1
	}
	say("\r\n")
	if cur != s.Password() {
		say("passwd: Authentication token manipulation error\r\npasswd: password unchanged\r\n")
		return 10
	}
	for try := 0; try < 3; try++ {
		say("New password: ")
		pw, err := r.line()
		if err != nil {
			return 1
		}
		if len(pw) < 8 {
			say("\r\nBAD PASSWORD: The password is shorter than 8 characters\r\n")
			continue
		}
		if pw == cur {
			say("\r\nBAD PASSWORD: The password is the same as the old one\r\n")
			continue
		}
		say("\r\nRetype new password: ")
		again, err := r.line()
		if err != nil {
			return 1
		}
		if again != pw {
			say("\r\nSorry, passwords do not match.\r\n")
			continue
		}
		s.mu.Lock()
		s.password = pw
		s.mu.Unlock()
		say("\r\npasswd: password updated successfully\r\n")
		return 0
	}
	say("passwd: Have exhausted maximum number of retries for service\r\npasswd: password unchanged\r\n")
	return 10
}

// lineReader reads newline-terminated answers from a channel.
type lineReader struct {
	r   io.Reader
	buf []byte
}

func (l *lineReader) line() (string, error) {
	p := make([]byte, 256)
	for {
		if i := bytes.IndexAny(l.buf, "\r\n"); i >= 0 {
			s := string(l.buf[:i])
			l.buf = l.buf[i+1:]
			return s, nil
		}
		n, err := l.r.Read(p)
		l.buf = append(l.buf, p[:n]...)
		if err != nil {
			return "", err
		}
	}
}
