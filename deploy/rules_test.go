package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRulesPassPromtool: Prometheus accepts the rules file the compose
// Prometheus loads. promtool comes with Debian's prometheus package
// (.ci/run installs it); without it the test is skipped, except in CI
// (CI=true), where a missing install step must fail rather than turn green.
func TestRulesPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found: install Debian's prometheus package"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	out, err := exec.Command(promtool, "check", "rules", filepath.Join("prometheus", "rules.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}
