// Package xmatrix owns the X-Matrix Authorization header of the
// Server-Server API (spec §Request Authentication): parsing it, formatting it,
// and the JSON object a federation request signs. It does no I/O: the
// outbound client (internal/fedclient) signs with it and the inbound check
// (internal/keyring, internal/federationapi) parses and verifies with it.
package xmatrix

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"

	"conclave/internal/event"
	"conclave/internal/matrix"
)

// Scheme is the authorization scheme, as senders write it.
const Scheme = "X-Matrix"

// MaxHeaderLen bounds the header a parser looks at. A real header is about
// 200 bytes (two server names of at most 255, a key ID and an 86-character
// signature); anything near this is garbage.
const MaxHeaderLen = 4096

// Header is one X-Matrix credential.
type Header struct {
	Origin string // the sending server's name
	// Destination is the receiving server's name. Senders must send it
	// (spec v1.3); recipients accept its absence from older servers.
	Destination string
	Key         string // the signing key ID, "ed25519:abc"
	Sig         string // unpadded base64 signature of RequestJSON
}

// ErrBadHeader is wrapped by every parse failure.
var ErrBadHeader = errors.New("invalid X-Matrix authorization header")

func bad(why string) error { return &parseError{why} }

type parseError struct{ why string }

func (e *parseError) Error() string { return ErrBadHeader.Error() + ": " + e.why }
func (e *parseError) Unwrap() error { return ErrBadHeader }

// Parse reads an Authorization header value. The grammar is RFC 7235's
// credentials (spec §Request Authentication): the scheme (case-insensitive),
// one or more spaces, then a comma-separated list of name=value parameters
// with optional whitespace around commas and the equals sign; names are
// case-insensitive; a value is a quoted-string (backslash escapes undone) or
// a token, where colons are also accepted unquoted for older servers, and
// '/', '+' and '=' too (unquoted base64 signatures, as Synapse accepts).
// Unknown parameters are ignored; a parameter given twice, a missing origin,
// key or sig, or a value that is not a server name or key ID is an error.
func Parse(s string) (Header, error) {
	var h Header
	if len(s) > MaxHeaderLen {
		return h, bad("longer than 4096 bytes")
	}
	if len(s) < len(Scheme) || !strings.EqualFold(s[:len(Scheme)], Scheme) {
		return h, bad("scheme is not X-Matrix")
	}
	rest := s[len(Scheme):]
	if rest == "" || rest[0] != ' ' {
		return h, bad("no parameters after X-Matrix")
	}
	p := parser{s: rest}
	seen := map[string]bool{}
	for {
		p.skipOWS()
		if p.done() {
			break
		}
		if p.peek() == ',' { // empty list elements are allowed by the # rule
			p.i++
			continue
		}
		name := p.token(false)
		if name == "" {
			return h, bad("expected a parameter name")
		}
		name = strings.ToLower(name)
		p.skipOWS()
		if p.done() || p.peek() != '=' {
			return h, bad("parameter " + name + " has no value")
		}
		p.i++
		p.skipOWS()
		var value string
		var err error
		if !p.done() && p.peek() == '"' {
			value, err = p.quoted()
			if err != nil {
				return h, err
			}
		} else if value = p.token(true); value == "" {
			return h, bad("parameter " + name + " has an empty or invalid value")
		}
		if seen[name] {
			return h, bad("parameter " + name + " given twice")
		}
		seen[name] = true
		switch name {
		case "origin":
			h.Origin = value
		case "destination":
			h.Destination = value
		case "key":
			h.Key = value
		case "sig":
			h.Sig = value
		}
		p.skipOWS()
		if p.done() {
			break
		}
		if p.peek() != ',' {
			return h, bad("expected a comma after parameter " + name)
		}
		p.i++
	}
	if err := h.validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

func (h Header) validate() error {
	if h.Origin == "" || h.Key == "" || h.Sig == "" {
		return bad("origin, key and sig are required")
	}
	if !matrix.ValidServerName(h.Origin) {
		return bad("origin is not a server name")
	}
	if h.Destination != "" && !matrix.ValidServerName(h.Destination) {
		return bad("destination is not a server name")
	}
	alg, ver, ok := strings.Cut(h.Key, ":")
	if !ok || alg == "" || !event.ValidKeyVersion(ver) || !event.ValidKeyVersion(alg) {
		return bad("key is not a key ID (algorithm:version)")
	}
	for i := 0; i < len(h.Sig); i++ {
		c := h.Sig[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return bad("sig is not base64")
		}
	}
	return nil
}

type parser struct {
	s string
	i int
}

func (p *parser) done() bool { return p.i >= len(p.s) }
func (p *parser) peek() byte { return p.s[p.i] }

func (p *parser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

// token reads RFC 7230 tchars; as a value, also ':' (spec compatibility
// advice) and the base64 characters '/' and '='.
func (p *parser) token(value bool) string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if isTchar(c) || value && (c == ':' || c == '/' || c == '=') {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i]
}

func isTchar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// quoted reads a quoted-string starting at '"' and returns it unescaped.
// Control characters other than tab and bytes above 0x7e are refused: every
// legitimate value (server names, key IDs, base64) is printable ASCII.
func (p *parser) quoted() (string, error) {
	p.i++ // opening quote
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case c == '"':
			p.i++
			return b.String(), nil
		case c == '\\':
			if p.i+1 >= len(p.s) {
				return "", bad("backslash at the end of a quoted value")
			}
			n := p.s[p.i+1]
			if n != '\t' && (n < 0x20 || n > 0x7e) {
				return "", bad("invalid escaped character")
			}
			b.WriteByte(n)
			p.i += 2
		case c == '\t' || c >= 0x20 && c <= 0x7e:
			b.WriteByte(c)
			p.i++
		default:
			return "", bad("invalid character in a quoted value")
		}
	}
	return "", bad("unterminated quoted value")
}

// String formats the header the way the spec advises senders to, for older
// recipients: one space after X-Matrix, lower-case names, no spaces around
// the commas, every value quoted. Backslashes and quotes (which no valid
// value contains) are escaped so that the result always parses back. An
// empty destination is left out.
func (h Header) String() string {
	var b strings.Builder
	b.Grow(64 + len(h.Origin) + len(h.Destination) + len(h.Key) + len(h.Sig))
	b.WriteString(Scheme)
	b.WriteString(" origin=")
	writeQuoted(&b, h.Origin)
	if h.Destination != "" {
		b.WriteString(",destination=")
		writeQuoted(&b, h.Destination)
	}
	b.WriteString(",key=")
	writeQuoted(&b, h.Key)
	b.WriteString(",sig=")
	writeQuoted(&b, h.Sig)
	return b.String()
}

func writeQuoted(b *strings.Builder, v string) {
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	b.WriteByte('"')
}

// RequestJSON returns the object a request signs (spec §Request
// Authentication, step 1): method, uri (the path from /_matrix with its
// query string, exactly as sent), origin, destination and, when the request
// has a body, content (the body's JSON). Server names are those before any
// delegation. The result is not yet canonical; SignJSON and VerifyJSON
// canonicalise it.
func RequestJSON(method, uri, origin, destination string, content []byte) ([]byte, error) {
	obj := struct {
		Method      string          `json:"method"`
		URI         string          `json:"uri"`
		Origin      string          `json:"origin"`
		Destination string          `json:"destination"`
		Content     json.RawMessage `json:"content,omitempty"`
	}{method, uri, origin, destination, nil}
	if len(content) > 0 {
		if !json.Valid(content) {
			return nil, errors.New("xmatrix: request content is not JSON")
		}
		obj.Content = content
	}
	return json.Marshal(obj)
}

// Sign signs a request as origin with key and returns the header to send.
// content is the request body (nil or empty for none); it must be strict
// canonical JSON material (integers only), as everything Conclave signs.
func Sign(key *event.SigningKey, method, uri, origin, destination string, content []byte) (Header, error) {
	obj, err := RequestJSON(method, uri, origin, destination, content)
	if err != nil {
		return Header{}, err
	}
	signed, err := event.SignJSON(obj, origin, key)
	if err != nil {
		return Header{}, err
	}
	var s struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(signed, &s); err != nil {
		return Header{}, err
	}
	return Header{Origin: origin, Destination: destination, Key: key.ID, Sig: s.Signatures[origin][key.ID]}, nil
}

// Verify checks h's signature over a received request with the origin's
// public key pub for h.Key. destination is the receiving server's own name:
// the signed JSON always names it, whether or not the header carries a
// destination (a header naming another destination must be refused with
// 401 by the caller before this; Verify refuses it too). uri is the request
// target as received (http.Request.RequestURI), content the body (nil or
// empty for none).
func Verify(h Header, method, uri, destination string, content []byte, pub ed25519.PublicKey) error {
	if h.Destination != "" && h.Destination != destination {
		return errors.New("xmatrix: request is addressed to " + h.Destination + ", not " + destination)
	}
	obj, err := RequestJSON(method, uri, h.Origin, destination, content)
	if err != nil {
		return err
	}
	sigs, err := json.Marshal(map[string]map[string]string{h.Origin: {h.Key: h.Sig}})
	if err != nil {
		return err
	}
	// Append "signatures" to the object: obj ends with '}'.
	withSig := make([]byte, 0, len(obj)+len(sigs)+16)
	withSig = append(withSig, obj[:len(obj)-1]...)
	withSig = append(withSig, `,"signatures":`...)
	withSig = append(withSig, sigs...)
	withSig = append(withSig, '}')
	return event.VerifyJSON(withSig, h.Origin, h.Key, pub)
}
