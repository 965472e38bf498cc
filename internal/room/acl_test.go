package room

import (
	"encoding/json"
	"testing"
)

func TestACLAllows(t *testing.T) {
	acl := json.RawMessage(`{"allow":["*.gouv.example","partner.example"],"deny":["evil.gouv.example"],"allow_ip_literals":false}`)
	for server, want := range map[string]bool{
		"interieur.gouv.example":      true,
		"interieur.gouv.example:8448": true,
		"partner.example":             true,
		"PARTNER.example":             true,
		"evil.gouv.example":           false,
		"evil.gouv.example:443":       false,
		"other.example":               false,
		"gouv.example":                false,
		"1.2.3.4":                     false,
		"[::1]:8448":                  false,
	} {
		if got := ACLAllows(acl, server); got != want {
			t.Errorf("%s: %v, want %v", server, got, want)
		}
	}
	if ACLAllows(json.RawMessage(`{"allow":["*"]}`), "1.2.3.4") != true {
		t.Error("IP literals are allowed unless allow_ip_literals is false")
	}
	if ACLAllows(json.RawMessage(`{}`), "any.example") != false {
		t.Error("an ACL without allow denies everyone")
	}
	for p, s := range map[string]string{"a?c": "abc", "*": "", "a*b*c": "axxbyyc", "**x": "x"} {
		if !globMatch(p, s) {
			t.Errorf("%q should match %q", p, s)
		}
	}
	for p, s := range map[string]string{"a?c": "ac", "a*b": "ac", "x": "xx"} {
		if globMatch(p, s) {
			t.Errorf("%q should not match %q", p, s)
		}
	}
}
