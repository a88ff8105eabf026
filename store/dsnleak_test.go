package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/store"
)

// A PostgreSQL store that cannot be opened says which database and server,
// never the password its connection string holds: not for a server that
// does not answer, nor for a string that does not parse.
func TestPostgresOpenErrorsHoldNoPassword(t *testing.T) {
	const pw = "Dsn-Secret-7q!Zx"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, dsn := range map[string]string{
		"NoServer":     "host=127.0.0.1 port=1 user=rotord password=" + pw + " dbname=journal connect_timeout=2",
		"URL":          "postgres://rotord:" + pw + "@127.0.0.1:1/journal?connect_timeout=2",
		"DoesNotParse": "host=127.0.0.1 password=" + pw + " port=notaport",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := store.OpenPostgres(ctx, dsn, nil, store.WithRetryWindow(0))
			if err == nil {
				t.Fatal("opened a database that is not there")
			}
			if strings.Contains(err.Error(), pw) {
				t.Fatalf("the error holds the password: %v", err)
			}
			if name != "DoesNotParse" && !strings.Contains(err.Error(), "journal") {
				t.Errorf("the error does not name the database: %v", err)
			}
		})
	}
}
