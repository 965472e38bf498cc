package stateres

import (
	"maps"
	"os"
	"testing"
)

// TestReferenceRandom resolves random conflicted DAGs with Resolve and with
// the reference resolver (reference_test.go) and requires the same state:
// 2,000 DAGs per room version (10 and 11: v2; 12: v2.1), or
// CONCLAVE_STATERES_DAGS for longer runs.
func TestReferenceRandom(t *testing.T) {
	for _, version := range allVersions {
		t.Run("v"+version, func(t *testing.T) {
			n := dagCount(t, 2000)
			differ := 0
			for seed := uint64(1); seed <= uint64(n); seed++ {
				d, sets := randomDAG(t, version, seed)
				ours := d.resolve(sets...)
				ref, err := refResolve(d.rv, sets, d, refOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(ours, ref) {
					differ++
					if differ <= 3 {
						t.Errorf("seed %d: Resolve and the reference differ:\n ours %s\n ref  %s", seed,
							d.describe(diffOnly(ours, ref)), d.describe(diffOnly(ref, ours)))
					}
				}
			}
			t.Logf("room version %s: %d DAGs, %d differ from the reference", version, n, differ)
		})
	}
}

// TestReferenceReadings counts the random DAGs on which the readings of the
// spec the reference can take (refOptions) change the result.
// It is a measurement, run only when CONCLAVE_STATERES_DAGS is set.
func TestReferenceReadings(t *testing.T) {
	if os.Getenv("CONCLAVE_STATERES_DAGS") == "" {
		t.Skip("set CONCLAVE_STATERES_DAGS to measure")
	}
	for _, version := range allVersions {
		n := dagCount(t, 2000)
		differ := 0
		for seed := uint64(1); seed <= uint64(n); seed++ {
			d, sets := randomDAG(t, version, seed)
			a, _ := refResolve(d.rv, sets, d, refOptions{})
			b, _ := refResolve(d.rv, sets, d, refOptions{specX: true})
			if !maps.Equal(a, b) {
				differ++
			}
		}
		t.Logf("room version %s: %d DAGs, the literal X differs on %d", version, n, differ)
	}
}
