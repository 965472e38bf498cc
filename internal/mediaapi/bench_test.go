package mediaapi_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"testing"

	"conclave/internal/homeserver/hstest"
)

const benchSize = 10 << 20

// BenchmarkUpload10MB: POST /upload of 10 MB over loopback: streaming to a
// staging file, SHA-256, fsync, rename and the row. Every iteration uploads
// new content (the first 8 bytes differ), so no deduplication shortcut.
func BenchmarkUpload10MB(b *testing.B) {
	s := hstest.Start(b)
	alice := s.CreateUser(b, "alice")
	data := make([]byte, benchSize)
	rand.Read(data)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		data[0], data[1], data[2], data[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
		req, _ := http.NewRequest("POST", s.URL+"/_matrix/media/v3/upload", bytes.NewReader(data))
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		req.Header.Set("Content-Type", "application/octet-stream")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			b.Fatalf("status %d", res.StatusCode)
		}
	}
}

// BenchmarkDownload10MB: authenticated GET of a 10 MB media.
func BenchmarkDownload10MB(b *testing.B) {
	s := hstest.Start(b)
	alice := s.CreateUser(b, "alice")
	data := make([]byte, benchSize)
	rand.Read(data)
	id := mustUpload(b, s, alice.Token, "application/octet-stream", "", data)
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req, _ := http.NewRequest("GET", s.URL+dl(id), nil)
		req.Header.Set("Authorization", "Bearer "+alice.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n != benchSize {
			b.Fatalf("status %d, %d bytes", res.StatusCode, n)
		}
	}
}
