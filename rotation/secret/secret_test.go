package secret_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rotord/rotord/rotation/secret"
)

func TestValueNeverPrints(t *testing.T) {
	const text = "Hunter2-very-secret"
	v := secret.New(text)
	type wrapper struct {
		P secret.Value
		Q *secret.Value
	}
	w := wrapper{P: v, Q: &v}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
		out = append(out, fmt.Sprintf(verb, v), fmt.Sprintf(verb, w))
	}
	out = append(out, fmt.Sprint(v), fmt.Sprintln(v), v.String(), v.GoString())
	js, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, string(js))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "pw", v, "w", w)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "pw", v)
	out = append(out, buf.String())
	for _, s := range out {
		if strings.Contains(s, text) || strings.Contains(s, fmt.Sprintf("%x", text)) {
			t.Errorf("secret leaked: %s", s)
		}
	}
	if v.Reveal() != text {
		t.Fatalf("Reveal = %q", v.Reveal())
	}
}

func TestValueEqual(t *testing.T) {
	if !secret.New("a").Equal(secret.New("a")) || secret.New("a").Equal(secret.New("b")) || secret.New("").Equal(secret.New("a")) {
		t.Fatal("Equal is wrong")
	}
	if !secret.New("").IsZero() || secret.New("x").IsZero() {
		t.Fatal("IsZero is wrong")
	}
}
