package interoptest

import (
	"os/exec"
	"strings"
	"testing"
)

// The Dendrite binary builds (or is found in the cache) and is the release
// asked for. `make interop-dendrite` runs this alone before the suite, so the
// build does not run alongside other packages' tests.
func TestDendriteBuilds(t *testing.T) {
	bin := Binary(t)
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -version: %v\n%s", bin, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != strings.TrimPrefix(DendriteVersion, "v") {
		t.Fatalf("dendrite -version: %q, want %s", got, DendriteVersion)
	}
}
