package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rotord/rotord/store"
	"github.com/rotord/rotord/store/pgtest"
)

// testCA returns a CA certificate (PEM) and, signed by it, a server
// certificate for the name localhost only, with its key (PEM).
func testCA(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rotord test PostgreSQL CA"},
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
		DNSNames: []string{"localhost"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// With sslmode=verify-full and a CA file (what store.ca_file asks for),
// the journal opens over TLS to a server whose certificate the CA signed
// for the name dialed, and refuses a server it did not sign, or one
// reached under a name the certificate does not hold.
func TestPostgresVerifyFull(t *testing.T) {
	pgtest.Shared(t) // skip, or fail under CI, without PostgreSQL
	ctx := context.Background()
	caPEM, certPEM, keyPEM := testCA(t)
	otherCA, _, _ := testCA(t)
	c, err := pgtest.StartTLS(&pgtest.TLS{CertPEM: certPEM, KeyPEM: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Remove()
	dir := t.TempDir()
	for name, data := range map[string][]byte{"ca.pem": caPEM, "other.pem": otherCA} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dsn := func(host, ca string) string {
		return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=verify-full sslrootcert=%s",
			host, c.Port(), filepath.Join(dir, ca))
	}
	db, err := store.OpenPostgres(ctx, dsn("localhost", "ca.pem"), store.NewKeyring(mustKey(t)))
	if err != nil {
		t.Fatalf("verify-full with the server's CA: %v", err)
	}
	var ssl bool
	if err := postgresBackend.raw(t, dsn("localhost", "ca.pem")).QueryRow(
		`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Errorf("connection not encrypted: %v %v", ssl, err)
	}
	_ = db.Close()
	var unknownCA x509.UnknownAuthorityError
	if db, err := store.OpenPostgres(ctx, dsn("localhost", "other.pem"), nil); !errors.As(err, &unknownCA) {
		if err == nil {
			_ = db.Close()
		}
		t.Errorf("a server certificate another CA signed: %v, want an unknown authority", err)
	}
	var wrongName x509.HostnameError
	if db, err := store.OpenPostgres(ctx, dsn("127.0.0.1", "ca.pem"), nil); !errors.As(err, &wrongName) {
		if err == nil {
			_ = db.Close()
		}
		t.Errorf("a certificate for another name: %v, want a host name mismatch", err)
	}
}
