package loadtest

import (
	"context"
	"testing"
)

func TestSlidingSyncScenario(t *testing.T) {
	c := testConfig(t)
	res, err := SlidingSync(context.Background(), c, SlidingSyncParams{Rooms: 25, Repeats: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstMs <= 0 || res.IncrementalMs <= 0 || res.FirstBytes < 1000 {
		t.Fatalf("figures missing: %+v", res)
	}
}
