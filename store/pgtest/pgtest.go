// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb
// into a temporary directory as an unprivileged user, a server listening
// on a Unix socket in that directory only, stopped when the tests end. It
// never touches the machine's own clusters.
//
// A test package calls Main from its TestMain; each test then asks for a
// database of its own with NewDatabase. Without PostgreSQL installed the
// tests that need it are skipped, except under CI=true, where that is a
// failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// unprivileged is the account the cluster runs as when the tests run as
// root: initdb and postgres refuse to run as root.
const unprivileged = "nobody"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir     string // owned by the server's user; holds data/ and the socket
	bin     string // directory of initdb, postgres
	uid     uint32
	gid     uint32
	asOther bool
	port    int      // with TLS: the loopback port (also the socket's number)
	extra   []string // with TLS: the server's settings for it

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the server process exits
	logf *os.File
	seq  int
}

var (
	cluster    *Cluster
	clusterErr error
)

// Main starts the cluster, runs the tests and stops the cluster; its
// result is the exit code. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	cluster, clusterErr = Start()
	if clusterErr != nil && os.Getenv("CI") == "true" {
		fmt.Fprintln(os.Stderr, "pgtest: PostgreSQL is required under CI=true:", clusterErr)
		return 1
	}
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: stop:", err)
		}
		_ = os.RemoveAll(cluster.dir)
	}
	return code
}

// Shared returns the cluster Main started; it skips the test when there
// is none (Main fails the run instead under CI=true).
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	if cluster == nil {
		if clusterErr == nil {
			clusterErr = errors.New("pgtest.Main was not called from TestMain")
		}
		if os.Getenv("CI") == "true" {
			tb.Fatalf("PostgreSQL: %v", clusterErr)
		}
		tb.Skipf("PostgreSQL: %v", clusterErr)
	}
	return cluster
}

// NewDatabase creates an empty database in the shared cluster and returns
// its connection string; the database is dropped when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	c := Shared(tb)
	name, err := c.CreateDatabase(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.DropDatabase(context.Background(), name) })
	return c.DSN(name)
}

// FindBin returns the directory holding initdb and postgres: initdb's in
// $PATH (symbolic links followed), else the newest /usr/lib/postgresql/*/bin.
func FindBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb not found in $PATH nor in /usr/lib/postgresql/*/bin (install Debian's postgresql package)")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// TLS makes a cluster also listen on a loopback TCP port with TLS, with
// the given server certificate and key (PEM).
type TLS struct {
	CertPEM, KeyPEM []byte
}

// Start creates and starts a new cluster in a new temporary directory,
// listening on a Unix socket there.
func Start() (*Cluster, error) { return StartTLS(nil) }

// StartTLS is Start with, when tls is not nil, TLS connections on a
// loopback port too (see Port). Stop it and remove its directory (Remove)
// when done.
func StartTLS(tls *TLS) (*Cluster, error) {
	bin, err := FindBin()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(unprivileged)
		if err != nil {
			return nil, fmt.Errorf("look up the user the cluster runs as: %w", err)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.uid, c.gid, c.asOther = uint32(uid), uint32(gid), true
	}
	dir, err := os.MkdirTemp("", "rotord-pg-")
	if err != nil {
		return nil, err
	}
	c.dir = dir
	if c.asOther {
		if err := os.Chown(dir, int(c.uid), int(c.gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	var out []byte
	initdb := c.command(filepath.Join(bin, "initdb"), "-D", c.data(), "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err = initdb.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w: %s", err, out)
	}
	if tls != nil {
		if err := c.setupTLS(tls); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := c.Restart(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return c, nil
}

// setupTLS writes the server's certificate and key, owned by the cluster's
// user, and picks a free loopback port.
func (c *Cluster) setupTLS(tls *TLS) error {
	for name, data := range map[string][]byte{"server.crt": tls.CertPEM, "server.key": tls.KeyPEM} {
		p := filepath.Join(c.dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		if c.asOther {
			if err := os.Chown(p, int(c.uid), int(c.gid)); err != nil {
				return err
			}
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	c.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	c.extra = []string{"-c", "listen_addresses=127.0.0.1", "-c", "port=" + strconv.Itoa(c.port), "-c", "ssl=on",
		"-c", "ssl_cert_file=" + filepath.Join(c.dir, "server.crt"), "-c", "ssl_key_file=" + filepath.Join(c.dir, "server.key")}
	return nil
}

// Port is the loopback TCP port of a cluster started with TLS (0 without).
// Its Unix socket then bears the same number.
func (c *Cluster) Port() int { return c.port }

// Remove stops the cluster and deletes its directory.
func (c *Cluster) Remove() error {
	err := c.Stop()
	_ = os.RemoveAll(c.dir)
	return err
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// SocketDir returns the directory of the server's Unix socket.
func (c *Cluster) SocketDir() string { return c.dir }

// command runs name as the cluster's user.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if c.asOther {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid}}
	}
	return cmd
}

// Restart starts the server if it is stopped and waits until it accepts
// connections.
func (c *Cluster) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	args := []string{"-D", c.data(), "-c", "listen_addresses=", "-c", "unix_socket_directories=" + c.dir,
		"-c", "fsync=off", "-c", "max_connections=300", "-c", "shared_buffers=32MB"}
	cmd := c.command(filepath.Join(c.bin, "postgres"), append(args, c.extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT // never outlive the tests
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.cmd, c.done, c.logf = cmd, done, logf
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		select {
		case <-done:
			c.cmd = nil
			_ = logf.Close()
			log, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("postgres exited at start: %s", log)
		case <-ctx.Done():
			return fmt.Errorf("postgres does not accept connections: %w", err)
		case <-tick.C:
		}
	}
}

// Stop shuts the server down (fast: open sessions are cut) and waits for it.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return nil
	}
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return err
	}
	<-c.done
	c.cmd = nil
	return c.logf.Close()
}

// DSN returns the connection string of database name, over the socket.
func (c *Cluster) DSN(name string) string {
	port := 5432
	if c.port != 0 {
		port = c.port
	}
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.dir, port, name)
}

// CreateDatabase creates a new, empty database and returns its name.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	c.mu.Lock()
	c.seq++
	name := fmt.Sprintf("t%d_%s", c.seq, hex.EncodeToString(b[:]))
	c.mu.Unlock()
	if err := c.admin(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return name, nil
}

// DropDatabase drops database name, cutting its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	return c.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

func (c *Cluster) admin(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, stmt)
	return err
}
