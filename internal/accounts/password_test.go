package accounts

import (
	"context"
	"strings"
	"testing"
)

func TestPasswordHashRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := newHasher(TestHashParams)
	enc, err := h.Hash(ctx, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("not a PHC argon2id string: %s", enc)
	}
	if ok, _ := h.Verify(ctx, "correct horse", enc); !ok {
		t.Fatal("right password refused")
	}
	if ok, _ := h.Verify(ctx, "correct horsf", enc); ok {
		t.Fatal("wrong password accepted")
	}
	enc2, _ := h.Hash(ctx, "correct horse")
	if enc2 == enc {
		t.Fatal("salt not random")
	}
	// A hasher with other parameters still verifies: parameters come from the hash.
	if ok, _ := newHasher(HashParams{MemoryKiB: 128, Time: 2, Threads: 2}).Verify(ctx, "correct horse", enc); !ok {
		t.Fatal("verification depends on the hasher's parameters")
	}
}

func TestPasswordHashMalformed(t *testing.T) {
	h := newHasher(TestHashParams)
	good, _ := h.Hash(context.Background(), "pw")
	parts := strings.Split(good, "$")
	for _, bad := range []string{
		"", "plain", "$argon2i$v=19$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=16$m=64,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=99999999,t=1,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1000,p=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1$" + parts[4] + "$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$!!$" + parts[5],
		"$argon2id$v=19$m=64,t=1,p=1$" + parts[4] + "$AAAA",
	} {
		if ok, err := h.Verify(context.Background(), "pw", bad); ok || err != nil {
			t.Errorf("%q: ok=%v err=%v", bad, ok, err)
		}
	}
}

// BenchmarkHashPassword measures the production parameters (ms per hash is
// ns/op / 1e6).
func BenchmarkHashPassword(b *testing.B) {
	h := newHasher(DefaultHashParams)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := h.Hash(context.Background(), "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}
