package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// HashParams are the argon2id cost parameters for new password hashes.
// Existing hashes carry their own parameters (PHC string), so changing these
// only affects passwords set afterwards.
type HashParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultHashParams suit a 2-core server: 64 MiB, 2 passes, 2 lanes, about
// 60-85 ms per hash there depending on load (BenchmarkHashPassword). At most hashSlots hashes run
// at once, which bounds memory to 128 MiB under a login flood.
var DefaultHashParams = HashParams{MemoryKiB: 64 * 1024, Time: 2, Threads: 2}

// TestHashParams are cheap (64 KiB, 1 pass): for test servers only.
var TestHashParams = HashParams{MemoryKiB: 64, Time: 1, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
	// Bounds on parameters read back from stored hashes, so a corrupt or
	// hostile row cannot make verification take gigabytes.
	maxMemoryKiB = 1 << 20
	maxTime      = 16
)

// MaxPasswordLength bounds passwords in bytes (Synapse uses 512).
const MaxPasswordLength = 512

var errBadHash = errors.New("accounts: malformed password hash")

// hasher runs argon2id with bounded concurrency.
type hasher struct {
	params HashParams
	slots  chan struct{}
}

const hashSlots = 2

func newHasher(p HashParams) *hasher {
	if p.MemoryKiB == 0 {
		p = DefaultHashParams
	}
	if p.Threads == 0 {
		p.Threads = 1
	}
	if p.Time == 0 {
		p.Time = 1
	}
	return &hasher{params: p, slots: make(chan struct{}, hashSlots)}
}

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *hasher) release() { <-h.slots }

// Hash returns the PHC string for password:
// $argon2id$v=19$m=65536,t=2,p=2$<salt>$<hash> (unpadded standard base64).
func (h *hasher) Hash(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	p := h.params
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches the PHC string encoded, comparing
// in constant time. An empty or malformed hash never matches.
func (h *hasher) Verify(ctx context.Context, password, encoded string) (bool, error) {
	p, salt, want, err := parsePHC(encoded)
	if err != nil {
		return false, nil
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// burn spends the time of one verification, so a login for an unknown user
// takes as long as one with a wrong password.
func (h *hasher) burn(ctx context.Context, password string) {
	if h.acquire(ctx) != nil {
		return
	}
	defer h.release()
	p := h.params
	argon2.IDKey([]byte(password), make([]byte, saltLen), p.Time, p.MemoryKiB, p.Threads, keyLen)
}

func parsePHC(s string) (p HashParams, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var seen int
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return p, nil, nil, errBadHash
		}
		switch k {
		case "m":
			p.MemoryKiB = uint32(n)
			seen |= 1
		case "t":
			p.Time = uint32(n)
			seen |= 2
		case "p":
			if n > 255 {
				return p, nil, nil, errBadHash
			}
			p.Threads = uint8(n)
			seen |= 4
		default:
			return p, nil, nil, errBadHash
		}
	}
	if seen != 7 || p.Threads == 0 || p.Time == 0 || p.Time > maxTime || p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxMemoryKiB {
		return p, nil, nil, errBadHash
	}
	b64 := base64.RawStdEncoding
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, errBadHash
	}
	return p, salt, key, nil
}
