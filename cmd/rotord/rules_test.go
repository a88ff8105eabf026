package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rotord/rotord/rotation"
)

// rulesDir holds the Prometheus alerting rules shipped with rotord.
const rulesDir = "../../deploy/prometheus"

// TestPrometheusRules checks the alerting rules and runs their unit tests
// with promtool (Debian's prometheus package; .ci/run installs it). Under
// CI=true a missing promtool fails the test.
func TestPrometheusRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found: install Debian's prometheus package (apt-get install --no-install-recommends prometheus)")
		}
		t.Skip("promtool not found; install Debian's prometheus package")
	}
	for _, args := range [][]string{
		{"check", "rules", "rotord-rules.yml"},
		{"test", "rules", "rotord-rules_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = rulesDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestRulesUseExportedMetrics: every rotord metric the alerting rules name
// is one the daemon exports, so a renamed metric cannot leave an alert
// silently watching nothing.
func TestRulesUseExportedMetrics(t *testing.T) {
	rules, err := os.ReadFile(filepath.Join(rulesDir, "rotord-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics()
	m.followSchedule(func(string) (time.Time, bool) { return time.Unix(0, 0), true })
	m.setSecrets([]rotation.SecretSpec{{Name: "web"}})
	exported := scrape(t, m)
	names := regexp.MustCompile(`rotord_[a-z_]+`).FindAllString(string(rules), -1)
	if len(names) == 0 {
		t.Fatal("the rules name no rotord metric")
	}
	for _, n := range names {
		if !strings.Contains(exported, "\n"+n+"{") {
			t.Errorf("the rules use %s, which rotord does not export", n)
		}
	}
}
