package event

import (
	"encoding/base64"
	"testing"
)

func TestThirdPartyInviteSigned(t *testing.T) {
	key, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := GenerateSigningKey()
	signed, err := SignJSON([]byte(`{"mxid":"@a:b","sender":"@c:d","token":"tok"}`), "d", key)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.PublicKeyBase64()
	urlSafe := base64.RawURLEncoding.EncodeToString(key.PublicKey())
	for name, c := range map[string]struct {
		signed []byte
		keys   []string
		want   bool
	}{
		"its key":          {signed, []string{pub}, true},
		"among others":     {signed, []string{other.PublicKeyBase64(), "not base64!", pub}, true},
		"url-safe, padded": {signed, []string{urlSafe + "="}, true},
		"another key":      {signed, []string{other.PublicKeyBase64()}, false},
		"no keys":          {signed, nil, false},
		"changed after":    {[]byte(string(signed[:len(signed)-1]) + `,"x":1}`), []string{pub}, false},
		"not signed":       {[]byte(`{"mxid":"@a:b","token":"tok"}`), []string{pub}, false},
		"not an object":    {[]byte(`[]`), []string{pub}, false},
	} {
		if got := ThirdPartyInviteSigned(c.signed, c.keys); got != c.want {
			t.Errorf("%s: %v, want %v", name, got, c.want)
		}
	}
}
