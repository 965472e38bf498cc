package event

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// The appendix "Cryptographic Test Vectors": seed, server "domain", key
// "ed25519:1".
func specKey(t testing.TB) *SigningKey {
	t.Helper()
	k, err := ParseSigningKey([]byte("ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignJSONSpecVectors(t *testing.T) {
	k := specKey(t)
	cases := []struct{ in, want string }{
		{`{}`, `{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}`},
		{`{"one": 1, "two": "Two"}`, `{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}`},
	}
	for _, tc := range cases {
		got, err := SignJSON([]byte(tc.in), "domain", k)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("SignJSON(%s):\n got %s\nwant %s", tc.in, got, tc.want)
		}
		if err := VerifyJSON(got, "domain", "ed25519:1", k.PublicKey()); err != nil {
			t.Errorf("VerifyJSON: %v", err)
		}
	}
}

func TestSignJSONKeepsOtherSignaturesAndUnsigned(t *testing.T) {
	k := specKey(t)
	in := `{"unsigned":{"age_ts":5},"signatures":{"other.org":{"ed25519:x":"abc"},"domain":{"ed25519:0":"old"}},"one":1,"two":"Two"}`
	got, err := SignJSON([]byte(in), "domain", k)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"one":1,"signatures":{"domain":{"ed25519:0":"old","ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"},"other.org":{"ed25519:x":"abc"}},"two":"Two","unsigned":{"age_ts":5}}`
	if string(got) != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	// Re-signing replaces our own signature in place.
	again, err := SignJSON(got, "domain", k)
	if err != nil || !bytes.Equal(again, got) {
		t.Fatalf("re-signing changed the object: %s (%v)", again, err)
	}
}

func TestVerifyJSONFailures(t *testing.T) {
	k := specKey(t)
	signed, _ := SignJSON([]byte(`{"one":1,"two":"Two"}`), "domain", k)
	other, _ := GenerateSigningKey()
	cases := map[string]struct {
		obj           string
		server, kid   string
		usePubOfOther bool
	}{
		"tampered":      {strings.Replace(string(signed), `"one":1`, `"one":2`, 1), "domain", "ed25519:1", false},
		"added key":     {strings.Replace(string(signed), `"one":1`, `"one":1,"three":3`, 1), "domain", "ed25519:1", false},
		"wrong server":  {string(signed), "elsewhere", "ed25519:1", false},
		"wrong key id":  {string(signed), "domain", "ed25519:2", false},
		"wrong pub":     {string(signed), "domain", "ed25519:1", true},
		"unknown alg":   {string(signed), "domain", "curve25519:1", false},
		"no signatures": {`{"one":1}`, "domain", "ed25519:1", false},
		"bad base64":    {`{"signatures":{"domain":{"ed25519:1":"!!!"}}}`, "domain", "ed25519:1", false},
		"not a string":  {`{"signatures":{"domain":{"ed25519:1":1}}}`, "domain", "ed25519:1", false},
	}
	for name, tc := range cases {
		pub := k.PublicKey()
		if tc.usePubOfOther {
			pub = other.PublicKey()
		}
		if err := VerifyJSON([]byte(tc.obj), tc.server, tc.kid, pub); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
	// unsigned is not covered.
	withUnsigned := strings.Replace(string(signed), `{"one"`, `{"unsigned":{"x":1},"one"`, 1)
	if err := VerifyJSON([]byte(withUnsigned), "domain", "ed25519:1", k.PublicKey()); err != nil {
		t.Errorf("unsigned must not be covered: %v", err)
	}
}

// The appendix "Event Signing" vectors. They predate hash-based event IDs
// but only exercise hashing, redaction of top-level keys that every room
// version up to 10 protects (origin, event_id) and signing.
func TestSignEventSpecVectors(t *testing.T) {
	k := specKey(t)
	rv, _ := GetRoomVersion("10")
	cases := []struct{ in, want string }{{
		`{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}`,
		`{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","signatures":{"domain":{"ed25519:1":"KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},"type":"X","unsigned":{"age_ts":1000000}}`,
	}, {
		`{"content":{"body":"Here is the message content"},"event_id":"$0:domain","origin":"domain","origin_server_ts":1000000,"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","signatures":{},"unsigned":{"age_ts":1000000}}`,
		`{"content":{"body":"Here is the message content"},"event_id":"$0:domain","hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"room_id":"!r:domain","sender":"@u:domain","signatures":{"domain":{"ed25519:1":"Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},"type":"m.room.message","unsigned":{"age_ts":1000000}}`,
	}}
	for i, tc := range cases {
		got, err := SignEvent(rv, []byte(tc.in), "domain", k)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("vector %d:\n got %s\nwant %s", i, got, tc.want)
		}
		red, err := Redact(rv, got)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyJSON(red, "domain", "ed25519:1", k.PublicKey()); err != nil {
			t.Errorf("vector %d: redacted copy does not verify: %v", i, err)
		}
	}
}

func TestSigningKeyFile(t *testing.T) {
	k := specKey(t)
	if k.ID != "ed25519:1" || k.Version() != "1" {
		t.Fatalf("ID %q", k.ID)
	}
	text, err := k.MarshalText()
	// The spec's seed ends in "XA1", which has non-zero padding bits; the
	// canonical encoding of the same 32 bytes ends in "XA0".
	if err != nil || string(text) != "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n" {
		t.Fatalf("MarshalText: %q %v", text, err)
	}
	g, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(g.ID, "ed25519:a_") || len(g.ID) != len("ed25519:a_AbCd") {
		t.Errorf("generated ID %q", g.ID)
	}
	text, _ = g.MarshalText()
	var back SigningKey
	if err := back.UnmarshalText(text); err != nil || back.ID != g.ID || !back.Private.Equal(g.Private) {
		t.Fatalf("round trip: %v", err)
	}
	if len(g.PublicKeyBase64()) != 43 || strings.Contains(g.PublicKeyBase64(), "=") {
		t.Errorf("public key base64 %q", g.PublicKeyBase64())
	}
	// Padded seeds, blank lines and several keys are accepted.
	multi := "\n" + strings.TrimSuffix(string(text), "\n") + "=\ned25519 b_2 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1\n"
	keys, err := ParseSigningKeys([]byte(multi))
	if err != nil || len(keys) != 2 || keys[0].ID != g.ID || keys[1].ID != "ed25519:b_2" {
		t.Fatalf("multi: %v %v", keys, err)
	}
	for _, bad := range []string{"", "ed25519 1", "rsa 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1", "ed25519 1 short", "ed25519 a:b YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"} {
		if _, err := ParseSigningKey([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
