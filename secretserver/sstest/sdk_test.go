package sstest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/DelineaXPM/tss-sdk-go/v3/server"

	"github.com/rotord/rotord/secretserver/sstest"
)

// TestDelineaSDK drives the emulator with Delinea's own Go SDK: probe,
// password grant, search, secret GET, template GET, password generation and
// whole-secret update. The emulator must satisfy the vendor's client, not
// only rotord's.
func TestDelineaSDK(t *testing.T) {
	srv := sstest.New()
	defer srv.Close()
	srv.AddUser("sdk-user", "", "Sdk-Pass-1!")
	id := srv.AddSecret(sstest.SecretSeed{Name: "web01 root", Folder: `\Prod`, Username: "root", Password: "Old-Pw-1!", Notes: "web01"})
	srv.AddSecret(sstest.SecretSeed{Name: "web01 root-old", Username: "root", Password: "x", Notes: "web01"})

	tss, err := server.New(server.Configuration{
		ServerURL:   srv.URL,
		Credentials: server.UserCredential{Username: "sdk-user", Password: "Sdk-Pass-1!"},
		CACertPEM:   string(srv.CACertPEM()),
		Timeout:     10 * time.Second,
	})
	if err != nil {
		t.Fatalf("sdk: %v", err)
	}

	s, err := tss.Secret(id)
	if err != nil {
		t.Fatalf("sdk Secret: %v", err)
	}
	if pw, ok := s.Field("password"); !ok || pw != "Old-Pw-1!" {
		t.Fatalf("sdk reads password %v", ok)
	}
	if u, _ := s.Field("username"); u != "root" || s.Name != "web01 root" || s.SecretTemplateID != sstest.DefaultTemplateID {
		t.Errorf("sdk reads user %q name %q template %d", u, s.Name, s.SecretTemplateID)
	}

	found, err := tss.Secrets("WEB01 ROOT", "")
	if err != nil {
		t.Fatalf("sdk Secrets: %v", err)
	}
	if len(found) != 2 {
		t.Errorf("sdk search found %d secrets, want 2 (substring match)", len(found))
	}

	tmpl, err := tss.SecretTemplate(s.SecretTemplateID)
	if err != nil {
		t.Fatalf("sdk SecretTemplate: %v", err)
	}
	gen, err := tss.GeneratePassword("password", tmpl)
	if err != nil {
		t.Fatalf("sdk GeneratePassword: %v", err)
	}
	if len(gen) != 20 || !strings.ContainsAny(gen, "0123456789") {
		t.Errorf("generated a %d-char password", len(gen))
	}

	for i := range s.Fields {
		if s.Fields[i].Slug == "password" {
			s.Fields[i].ItemValue = gen
		}
	}
	updated, err := tss.UpdateSecret(*s)
	if err != nil {
		t.Fatalf("sdk UpdateSecret: %v", err)
	}
	if got := srv.Field(id, "password"); got != gen {
		t.Errorf("emulator holds a different password after the SDK's update")
	}
	if pw, _ := updated.Field("password"); pw != gen {
		t.Errorf("sdk reads back a different password")
	}
	if srv.Calls(sstest.EndpointToken) != 1 || srv.Calls(sstest.EndpointHealth) == 0 || srv.Calls(sstest.EndpointPutSecret) != 1 {
		t.Errorf("calls: token %d health %d put %d", srv.Calls(sstest.EndpointToken), srv.Calls(sstest.EndpointHealth), srv.Calls(sstest.EndpointPutSecret))
	}
}
