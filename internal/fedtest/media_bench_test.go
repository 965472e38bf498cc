package fedtest

import (
	"bytes"
	"crypto/rand"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// BenchmarkRemoteMediaFetch measures a client of A reading 1 MiB media of
// B through A for the first time: A's signed federation request, B's
// multipart answer, A staging, hashing, storing and recording it, then
// serving it. Reported as MB/s of first reads.
//
//	go test -run XXX -bench RemoteMediaFetch -benchtime 20x ./internal/fedtest/
func BenchmarkRemoteMediaFetch(b *testing.B) {
	ss := hstest.StartFederation(b, 2)
	a, s := ss[0], ss[1]
	alice, bob := a.CreateUser(b, "alice"), s.CreateUser(b, "bob")
	const size = 1 << 20
	ids := make([]string, b.N)
	for i := range ids {
		data := make([]byte, size)
		rand.Read(data)
		ids[i] = uploadTo(b, s, bob, "application/octet-stream", "", data)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := rawDo(b, a, "GET", remoteDL(s.ServerName, ids[i]), alice.Token, "", nil)
		if r.Status != 200 || len(r.Body) != size || bytes.Equal(r.Body[:16], make([]byte, 16)) {
			b.Fatalf("fetch %d: %d, %d bytes", i, r.Status, len(r.Body))
		}
	}
}
