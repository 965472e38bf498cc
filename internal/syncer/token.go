package syncer

import (
	"strconv"
	"strings"
)

// Token is a /sync position: the global stream position everything durable
// is ordered by, and the in-memory typing serial (ephemeral, so it restarts
// at zero with the process; a token from before a restart just gets the
// current typing state), and likewise the presence serial. Written
// "s<pos>_<typing>_<presence>".
type Token struct {
	Pos      int64
	Typing   int64
	Presence int64
}

func (t Token) String() string {
	return "s" + strconv.FormatInt(t.Pos, 10) + "_" + strconv.FormatInt(t.Typing, 10) + "_" + strconv.FormatInt(t.Presence, 10)
}

// ParseToken reads a since token. It accepts "s<pos>", "s<pos>_<typing>",
// and pagination tokens "t<pos>" (some clients hand those back).
func ParseToken(s string) (Token, bool) {
	if len(s) < 2 || (s[0] != 's' && s[0] != 't') {
		return Token{}, false
	}
	s = s[1:]
	var t Token
	posPart, typingPart, hasTyping := strings.Cut(s, "_")
	p, err := strconv.ParseInt(posPart, 10, 64)
	if err != nil || p < 0 {
		return Token{}, false
	}
	t.Pos = p
	if hasTyping {
		typingPart, rest, hasPresence := strings.Cut(typingPart, "_")
		n, err := strconv.ParseInt(typingPart, 10, 64)
		if err != nil || n < 0 {
			return Token{}, false
		}
		t.Typing = n
		if hasPresence {
			// Later parts (if a future version adds streams) are ignored.
			rest, _, _ = strings.Cut(rest, "_")
			n, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || n < 0 {
				return Token{}, false
			}
			t.Presence = n
		}
	}
	return t, true
}
