package threepid

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Localpart is the localpart Tchap gives the account of an address: the
// address in lower case with @ turned into -, keeping only the characters
// a localpart may hold (a-z, 0-9, _ - . / =), so jean.martin@x.gouv.fr is
// jean.martin-x.gouv.fr. (Tchap's ProConnect mapping, synapse-sso-proconnect;
// when that localpart belongs to a deactivated account, Tchap numbers it:
// accounts.RegisterRequest.NumberIfTaken.)
func Localpart(address string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.Replace(address, "@", "-", 1)) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./=", r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// DisplayName is the display name Tchap gives the account of an address:
// the local part's dot-separated words capitalised (so are the parts of a
// hyphenated word), then the organisation in brackets — for a domain under
// gouv.fr the label just before gouv.fr (gouv.fr itself: Gouv), otherwise
// the label before the top-level domain:
// jean.martin@x.gouv.fr → "Jean Martin [X]",
// foo-bar.baz@nikan.com → "Foo-Bar Baz [Nikan]".
func DisplayName(address string) string {
	at := strings.LastIndexByte(address, '@')
	if at < 0 {
		return address
	}
	local, domain := address[:at], strings.ToLower(address[at+1:])
	var words []string
	for _, w := range strings.Split(local, ".") {
		if w != "" {
			words = append(words, capitalizeParts(w))
		}
	}
	name := strings.Join(words, " ")
	if org := organisation(domain); org != "" {
		name += " [" + capitalizeParts(org) + "]"
	}
	return name
}

func organisation(domain string) string {
	labels := strings.Split(domain, ".")
	if domain == "gouv.fr" {
		return "gouv"
	}
	if strings.HasSuffix(domain, ".gouv.fr") {
		return labels[len(labels)-3]
	}
	if len(labels) >= 2 {
		return labels[len(labels)-2]
	}
	return domain
}

// capitalizeParts capitalises each hyphen-separated part: upper-case first
// letter, the rest lower case (Python's str.capitalize, which Tchap uses).
func capitalizeParts(w string) string {
	parts := strings.Split(w, "-")
	for i, p := range parts {
		if p == "" {
			continue
		}
		r, n := utf8.DecodeRuneInString(p)
		parts[i] = string(unicode.ToUpper(r)) + strings.ToLower(p[n:])
	}
	return strings.Join(parts, "-")
}
