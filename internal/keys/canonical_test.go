package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
)

func TestCanonical(t *testing.T) {
	// Examples from the spec's appendix "Canonical JSON" (the one with an
	// exponent is left out: key objects are held to the strict, integers-only
	// form of room versions 6+, which refuses exponents).
	cases := map[string]string{
		`{}`:                             `{}`,
		`{"one": 1, "two": "Two"}`:       `{"one":1,"two":"Two"}`,
		`{"b": "2", "a": "1"}`:           `{"a":"1","b":"2"}`,
		`{"a": "日本語"}`:                   `{"a":"日本語"}`,
		`{"本": 2, "日": 1}`:               `{"日":1,"本":2}`,
		`{"a": "\u65E5"}`:                `{"a":"日"}`,
		`{"a": null}`:                    `{"a":null}`,
		`{"a": "<>&\u2028\"\\\n\u0001"}`: "{\"a\":\"<>&\u2028\\\"\\\\\\n\\u0001\"}",
		`{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}`: `{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`,
	}
	for in, want := range cases {
		got, err := Canonical([]byte(in))
		if err != nil || string(got) != want {
			t.Errorf("Canonical(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{`{"a": 1.5}`, `{"a": 9007199254740992}`, `{"a": 1} x`, `{`} {
		if _, err := Canonical([]byte(bad)); err == nil {
			t.Errorf("Canonical(%s) accepted", bad)
		}
	}
}

func TestVerifySpecExample(t *testing.T) {
	// The spec's "Signing JSON" examples, signing key seed below, key ID ed25519:1.
	seed, _ := base64.RawStdEncoding.DecodeString("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
	pub := base64.RawStdEncoding.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
	ok := []string{
		`{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}`,
		`{"one":1,"two":"Two","unsigned":{"x":1},"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}}}`,
	}
	for _, s := range ok {
		if err := VerifySignature(json.RawMessage(s), "domain", "ed25519:1", pub); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{
		`{"one":2,"two":"Two","signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}}}`,
		`{"signatures":{"other":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}`,
		`{"signatures":{"domain":{"ed25519:1":"!!"}}}`,
		`{}`,
	}
	for _, s := range bad {
		if err := VerifySignature(json.RawMessage(s), "domain", "ed25519:1", pub); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s verified: %v", s, err)
		}
	}
}
