package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// mailServer is a real SMTP server (go-smtp's server side) on loopback,
// with a certificate for localhost from a CA made for the test, STARTTLS
// or implicit TLS, and AUTH PLAIN required before MAIL.
type mailServer struct {
	host  string // localhost: the name in its certificate
	port  int
	caPEM string // the test CA that signed its certificate
	user  string
	pass  string

	mu     sync.Mutex
	got    []receivedMail
	reject bool // refuse every message at DATA (a relay failing)
}

// receivedMail is one message the server accepted.
type receivedMail struct {
	user string   // who authenticated
	tls  bool     // the session was encrypted when DATA came
	from string   // MAIL FROM
	to   []string // RCPT TO, in order
	data string   // the message as received
}

// newMailServer starts a mail server; implicit selects TLS from the first
// byte (else STARTTLS on a plain listener).
func newMailServer(t *testing.T, implicit bool) *mailServer {
	t.Helper()
	caPEM, cert := testCertificate(t)
	m := &mailServer{host: "localhost", caPEM: caPEM, user: "alerts", pass: "Smtp-Pw_93kq!z"}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.port = ln.Addr().(*net.TCPAddr).Port
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	if implicit {
		ln = tls.NewListener(ln, tc)
	}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: m, conn: c}, nil
	}))
	s.Domain = "localhost"
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	s.AllowInsecureAuth = false // AUTH only once the session is encrypted
	s.ErrorLog = quietLogger{}
	if !implicit {
		s.TLSConfig = tc
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return m
}

// setReject makes the server refuse (or accept again) every message.
func (m *mailServer) setReject(r bool) {
	m.mu.Lock()
	m.reject = r
	m.mu.Unlock()
}

// mails returns the messages accepted so far.
func (m *mailServer) mails() []receivedMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]receivedMail(nil), m.got...)
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
func (quietLogger) Println(...any)        {}

// mailSession is one SMTP session of a mailServer.
type mailSession struct {
	srv  *mailServer
	conn *smtp.Conn
	user string
	cur  receivedMail
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.srv.user || pass != s.srv.pass {
			return errors.New("invalid credentials")
		}
		s.user = user
		return nil
	}), nil
}

func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.cur = receivedMail{user: s.user, from: from}
	return nil
}

func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, s.cur.tls = s.conn.TLSConnectionState()
	s.cur.data = string(b)
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if s.srv.reject {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	s.srv.got = append(s.srv.got, s.cur)
	return nil
}

func (s *mailSession) Reset()        { s.cur = receivedMail{} }
func (s *mailSession) Logout() error { return nil }

// testCertificate makes a CA and, signed by it, a certificate for
// localhost and 127.0.0.1; it returns the CA in PEM and the certificate.
func testCertificate(t *testing.T) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rotord test mail CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// smtpSection is a notify.smtp section for m (indented under notify:),
// its password in passwordFile and its CA in caFile ("" to trust none).
func (m *mailServer) smtpSection(implicit bool, caFile, passwordFile string) string {
	tlsMode := "starttls"
	if implicit {
		tlsMode = "implicit"
	}
	s := "  smtp:\n    host: " + m.host + "\n    port: " + strconv.Itoa(m.port) + "\n    tls: " + tlsMode + "\n" +
		"    username: " + m.user + "\n    password_file: " + passwordFile + "\n" +
		"    from: rotord@example.com\n    to: [ops@example.com, \"On Call <oncall@example.net>\"]\n"
	if caFile != "" {
		s += "    ca_file: " + caFile + "\n"
	}
	return s
}

// parseMail reads a received message, failing the test if it is not RFC
// 5322 with the headers an alert mail must carry.
func parseMail(t *testing.T, data string) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(data))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v\n%s", err, data)
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := msg.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
		t.Errorf("Message-ID %q", id)
	}
	if from, err := msg.Header.AddressList("From"); err != nil || len(from) != 1 || from[0].Address != "rotord@example.com" {
		t.Errorf("From %q: %v", msg.Header.Get("From"), err)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 2 || to[0].Address != "ops@example.com" || to[1].Address != "oncall@example.net" {
		t.Errorf("To %q: %v", msg.Header.Get("To"), err)
	}
	body, _ := io.ReadAll(msg.Body)
	return msg, string(body)
}
