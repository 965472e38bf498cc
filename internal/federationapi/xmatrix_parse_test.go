package federationapi

import "testing"

func TestParseXMatrix(t *testing.T) {
	for _, c := range []struct {
		h    string
		want xMatrix
		ok   bool
		bad  bool
	}{
		{`X-Matrix origin="hs2",destination="hs1",key="ed25519:a",sig="c2ln"`, xMatrix{"hs2", "hs1", "ed25519:a", "c2ln", true}, true, false},
		// Names case insensitive, any order, spaces and tabs around commas,
		// several spaces after the scheme, bare tokens with colons.
		{"X-Matrix   SIG=c2ln ,\tKey=ed25519:a , origin=hs2:8448", xMatrix{"hs2:8448", "", "ed25519:a", "c2ln", false}, true, false},
		// Backslash escapes in quoted values; unknown parameters ignored.
		{`X-Matrix origin="h\"s\\2",key="ed25519:a",sig="s",extra="x,y"`, xMatrix{`h"s\2`, "", "ed25519:a", "s", false}, true, false},
		{`x-matrix origin=hs2,key=ed25519:a,sig=s,destination=`, xMatrix{"hs2", "", "ed25519:a", "s", true}, true, false},
		{`Bearer abc`, xMatrix{}, false, false},
		{`X-Matrix`, xMatrix{}, true, true},
		{`X-Matrix origin="hs2",key="ed25519:a"`, xMatrix{}, true, true},
		{`X-Matrix origin="hs2,key=ed25519:a,sig=s`, xMatrix{}, true, true},
		{`X-Matrix origin="hs2"x,key=ed25519:a,sig=s`, xMatrix{}, true, true},
		{`X-Matrix =hs2,key=ed25519:a,sig=s`, xMatrix{}, true, true},
	} {
		got, ok, err := parseXMatrix(c.h)
		if ok != c.ok || (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("%s: %+v %v %v", c.h, got, ok, err)
		}
	}
}
