package syncer

import "testing"

func TestTokenRoundTrip(t *testing.T) {
	for _, tok := range []Token{{0, 0, 0}, {1, 0, 5}, {123456789, 42, 7}} {
		got, ok := ParseToken(tok.String())
		if !ok || got != tok {
			t.Fatalf("%v -> %q -> %v %v", tok, tok.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "s", "x12", "s-1", "s1_-2", "s1_x", "s1_2_x", "sabc", "s99999999999999999999999"} {
		if _, ok := ParseToken(bad); ok {
			t.Errorf("%q accepted", bad)
		}
	}
	if got, ok := ParseToken("t77"); !ok || got.Pos != 77 {
		t.Errorf("pagination token: %v %v", got, ok)
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"s1_2", "t5", "s", "s1_2_3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, ok := ParseToken(s)
		if ok {
			again, ok2 := ParseToken(tok.String())
			if !ok2 || again != tok {
				t.Fatalf("%q: %v does not round-trip", s, tok)
			}
		}
	})
}
