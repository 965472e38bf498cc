package clientapi_test

import (
	"fmt"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// BenchmarkKeysUpload measures POST /keys/upload of 50 signed one-time keys
// (what clients upload at a time) over HTTP.
func BenchmarkKeysUpload(b *testing.B) {
	s := hstest.Start(b)
	d := newDevice(b, s.CreateUser(b, "alice"))
	upload(b, s, d, map[string]any{"device_keys": d.deviceKeys(b)})
	bodies := make([]map[string]any, b.N)
	for i := range bodies {
		bodies[i] = map[string]any{"one_time_keys": d.otks(b, fmt.Sprintf("k%d_", i), 50)}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := upload(b, s, d, bodies[i]); r.Status != 200 {
			b.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	b.ReportMetric(float64(b.N*50)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkKeysClaim measures POST /keys/claim of one key over HTTP.
func BenchmarkKeysClaim(b *testing.B) {
	s := hstest.Start(b)
	d := newDevice(b, s.CreateUser(b, "bob"))
	claimer := s.CreateUser(b, "alice")
	upload(b, s, d, map[string]any{"device_keys": d.deviceKeys(b)})
	for i := 0; i < b.N; i += 500 {
		if r := upload(b, s, d, map[string]any{"one_time_keys": d.otks(b, fmt.Sprintf("k%d_", i), 500)}); r.Status != 200 {
			b.Fatalf("%d %s", r.Status, r.Body)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if got := claim(b, s, claimer.Token, d); len(got) != 1 {
			b.Fatalf("claim %d: %v", i, got)
		}
	}
}

// BenchmarkKeysClaimParallel claims from many goroutines at once.
func BenchmarkKeysClaimParallel(b *testing.B) {
	s := hstest.Start(b)
	d := newDevice(b, s.CreateUser(b, "bob"))
	claimer := s.CreateUser(b, "alice")
	upload(b, s, d, map[string]any{"device_keys": d.deviceKeys(b)})
	for i := 0; i < b.N; i += 500 {
		upload(b, s, d, map[string]any{"one_time_keys": d.otks(b, fmt.Sprintf("k%d_", i), 500)})
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if got := claim(b, s, claimer.Token, d); len(got) != 1 {
				b.Errorf("empty claim")
				return
			}
		}
	})
}
