package xmatrix

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"conclave/internal/event"
)

func TestParseAccepts(t *testing.T) {
	want := Header{Origin: "origin.example", Destination: "dest.example:8448", Key: "ed25519:key1", Sig: "ABC+/def"}
	for _, s := range []string{
		`X-Matrix origin="origin.example",destination="dest.example:8448",key="ed25519:key1",sig="ABC+/def"`,
		// Scheme and names are case-insensitive; order does not matter.
		`x-matrix ORIGIN="origin.example",Destination="dest.example:8448",SIG="ABC+/def",kEy="ed25519:key1"`,
		// Several spaces after the scheme, whitespace around commas and '='.
		"X-Matrix   origin = \"origin.example\" ,\tdestination=\"dest.example:8448\" , key=\"ed25519:key1\",sig=\"ABC+/def\"  ",
		// Unquoted values, colons included (compatibility advice), base64.
		`X-Matrix origin=origin.example,destination=dest.example:8448,key=ed25519:key1,sig=ABC+/def`,
		// Escapes are undone.
		`X-Matrix origin="origin\.example",destination="dest.example:8448",key="ed25519:key1",sig="ABC+/def"`,
		// Unknown parameters are ignored; empty list elements allowed.
		`X-Matrix origin="origin.example",,extra="x y",destination="dest.example:8448",key="ed25519:key1",sig="ABC+/def",`,
	} {
		h, err := Parse(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if h != want {
			t.Errorf("%s: got %+v", s, h)
		}
	}
	// destination may be absent (older servers).
	h, err := Parse(`X-Matrix origin=o.example,key="ed25519:k",sig="c2ln"`)
	if err != nil || h.Destination != "" || h.Origin != "o.example" {
		t.Fatalf("no destination: %+v %v", h, err)
	}
}

func TestParseRejects(t *testing.T) {
	ok := `origin="o.example",destination="d.example",key="ed25519:k",sig="c2ln"`
	for _, s := range []string{
		"",
		"X-Matrix",
		"X-Matrix ",
		"Bearer abc",
		"X-Matrixorigin=o",
		"X-Matrix," + ok,
		"X-Matrix " + ok + `,origin="o.example"`, // duplicate
		"X-Matrix " + ok + `,Sig="c2ln"`,         // duplicate, other case
		"X-Matrix " + ok + `,x=1,X=2`,            // duplicate unknown
		`X-Matrix origin="o.example",key="ed25519:k"`,           // no sig
		`X-Matrix destination="d",key="ed25519:k",sig="a"`,      // no origin
		`X-Matrix origin="o.example",key="ed25519:k",sig="c2ln`, // unterminated
		`X-Matrix origin="o.example",key="ed25519:k",sig="c2ln\`,
		`X-Matrix origin="o.example" key="ed25519:k",sig="c2ln"`, // missing comma
		`X-Matrix origin="o.example",key,sig="c2ln"`,
		`X-Matrix origin="o.example",key=,sig="c2ln"`,
		`X-Matrix origin="o.example",="x",key="ed25519:k",sig="c2ln"`,
		`X-Matrix origin="bad name",key="ed25519:k",sig="c2ln"`,
		`X-Matrix origin="o.example",destination="bad/name",key="ed25519:k",sig="c2ln"`,
		`X-Matrix origin="o.example",key="nocolon",sig="c2ln"`,
		`X-Matrix origin="o.example",key="ed25519:bad-version",sig="c2ln"`,
		`X-Matrix origin="o.example",key="ed25519:k",sig="not base64!"`,
		"X-Matrix origin=\"o.example\",key=\"ed25519:k\",sig=\"c2\x00ln\"",
		"X-Matrix origin=\"o.ex\xc3\xa9\",key=\"ed25519:k\",sig=\"c2ln\"",
		"X-Matrix " + ok + `,pad="` + strings.Repeat("a", MaxHeaderLen) + `"`,
	} {
		if h, err := Parse(s); err == nil || !errors.Is(err, ErrBadHeader) {
			t.Errorf("%q: accepted as %+v (err %v)", s, h, err)
		}
	}
}

func TestFormatIsWhatTheSpecAdvises(t *testing.T) {
	h := Header{Origin: "o.example", Destination: "localhost:8449", Key: "ed25519:a_Bc", Sig: "c2ln"}
	want := `X-Matrix origin="o.example",destination="localhost:8449",key="ed25519:a_Bc",sig="c2ln"`
	if got := h.String(); got != want {
		t.Fatalf("got %s", got)
	}
	h.Destination = ""
	if got := h.String(); got != `X-Matrix origin="o.example",key="ed25519:a_Bc",sig="c2ln"` {
		t.Fatalf("no destination: %s", got)
	}
}

// The signed object is the spec's step 1, and a signature made by Sign
// verifies with the public key, for the same request only.
func TestSignVerify(t *testing.T) {
	key, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"pdus":[],"origin":"a.example:8448","n":1}`)
	obj, err := RequestJSON("PUT", "/_matrix/federation/v1/send/1?x=%20", "a.example:8448", "b.example", body)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(obj, &m)
	if m["method"] != "PUT" || m["uri"] != "/_matrix/federation/v1/send/1?x=%20" || m["origin"] != "a.example:8448" || m["destination"] != "b.example" || m["content"] == nil {
		t.Fatalf("signed object %s", obj)
	}
	if obj, _ := RequestJSON("GET", "/x", "a", "b", nil); strings.Contains(string(obj), "content") {
		t.Fatalf("GET without body has content: %s", obj)
	}

	h, err := Sign(key, "PUT", "/_matrix/federation/v1/send/1?x=%20", "a.example:8448", "b.example", body)
	if err != nil {
		t.Fatal(err)
	}
	if h.Key != key.ID || h.Origin != "a.example:8448" || h.Destination != "b.example" || len(h.Sig) != 86 {
		t.Fatalf("header %+v", h)
	}
	parsed, err := Parse(h.String())
	if err != nil || parsed != h {
		t.Fatalf("round trip %+v %v", parsed, err)
	}
	pub := key.PublicKey()
	// Key order and whitespace in the body do not matter: the JSON is signed.
	if err := Verify(parsed, "PUT", "/_matrix/federation/v1/send/1?x=%20", "b.example", []byte(`{ "n":1, "origin":"a.example:8448","pdus":[]}`), pub); err != nil {
		t.Fatalf("verify: %v", err)
	}
	for name, c := range map[string]struct {
		method, uri, dest string
		body              []byte
	}{
		"method":      {"POST", "/_matrix/federation/v1/send/1?x=%20", "b.example", body},
		"uri":         {"PUT", "/_matrix/federation/v1/send/2?x=%20", "b.example", body},
		"query":       {"PUT", "/_matrix/federation/v1/send/1", "b.example", body},
		"destination": {"PUT", "/_matrix/federation/v1/send/1?x=%20", "c.example", body},
		"body":        {"PUT", "/_matrix/federation/v1/send/1?x=%20", "b.example", []byte(`{"pdus":[],"origin":"a.example:8448","n":2}`)},
		"no body":     {"PUT", "/_matrix/federation/v1/send/1?x=%20", "b.example", nil},
	} {
		if err := Verify(parsed, c.method, c.uri, c.dest, c.body, pub); err == nil {
			t.Errorf("%s changed and still verifies", name)
		}
	}
	other, _ := event.GenerateSigningKey()
	if err := Verify(parsed, "PUT", "/_matrix/federation/v1/send/1?x=%20", "b.example", body, other.PublicKey()); err == nil {
		t.Error("verifies with another key")
	}
	// Without a destination in the header the recipient's own name is signed.
	noDest := parsed
	noDest.Destination = ""
	if err := Verify(noDest, "PUT", "/_matrix/federation/v1/send/1?x=%20", "b.example", body, pub); err != nil {
		t.Errorf("header without destination: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`X-Matrix origin="origin.example",destination="dest.example:8448",key="ed25519:key1",sig="ABC+/def"`,
		`x-matrix ORIGIN=o.example , key=ed25519:k,sig=c2ln`,
		`X-Matrix origin="o\"x",key="ed25519:k",sig="c2ln"`,
		`X-Matrix origin="[::1]:8448",destination="1.2.3.4",key="ed25519:k",sig="c2ln=="`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			return
		}
		out := h.String()
		h2, err := Parse(out)
		if err != nil {
			t.Fatalf("formatted header %q does not parse: %v", out, err)
		}
		if h2 != h {
			t.Fatalf("round trip changed %+v into %+v", h, h2)
		}
		if h2.String() != out {
			t.Fatalf("format not stable: %q then %q", out, h2.String())
		}
	})
}
