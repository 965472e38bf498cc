package accounts_test

import (
	"context"
	"path/filepath"
	"testing"

	"conclave/internal/accounts"
	"conclave/internal/store/sqlite"
)

// BenchmarkAuthenticate measures the access-token lookup every request pays
// (SHA-256 and one indexed SQLite read), to decide whether a cache is worth it.
func BenchmarkAuthenticate(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	svc := accounts.New(db, "localhost", accounts.Options{OpenRegistration: true, HashParams: accounts.TestHashParams})
	res, err := svc.Register(ctx, accounts.RegisterRequest{Localpart: "bench", Password: "pw"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := svc.Authenticate(ctx, res.AccessToken); err != nil {
			b.Fatal(err)
		}
	}
}
