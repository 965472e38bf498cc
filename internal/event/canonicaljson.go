package event

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxJSONDepth bounds the nesting of arrays and objects that CanonicalJSON
// accepts (the top-level value is depth 1). The encoder is recursive, so the
// bound caps its stack use on hostile input. The spec sets no limit; 256 is
// far above anything a real event needs, yet below the point where Synapse
// (Python's recursion limit, about 1000) starts failing, so Conclave never
// accepts an event that the dominant implementation cannot process, and
// rejects only events that are already unusable elsewhere.
const MaxJSONDepth = 256

// maxSafeInteger is 2^53-1, the bound of the canonical JSON number range.
const maxSafeInteger = 1<<53 - 1

// CanonicalJSON re-encodes the JSON value in as Matrix canonical JSON
// (spec appendix "Canonical JSON"): object keys sorted by code point, no
// insignificant whitespace, UTF-8, and only '"', '\\' and control characters
// escaped (\b \f \n \r \t short, the rest as lowercase \u00xx).
//
// With strict (room versions 6 and later, and everything that is not an event
// of an older room) every number must be an integer literal within
// [-(2^53)+1, 2^53-1]; fractions and exponents are refused, as Synapse does.
// Without strict (events of room versions 1–5, which the spec says servers
// SHOULD still accept), any JSON number is accepted: integer literals are
// kept verbatim whatever their size, other numbers whose value is an integer
// of safe magnitude are written as that integer (the spec's own example turns
// 1e10 into 10000000000), and the remainder are written the way Python's
// repr writes a float, which is how such events were hashed when they were
// made. "-0" is always written "0".
//
// Invalid UTF-8, lone surrogate escapes, duplicate keys, trailing data and
// nesting beyond MaxJSONDepth are errors wrapping ErrBadJSON.
func CanonicalJSON(in []byte, strict bool) ([]byte, error) {
	return AppendCanonicalJSON(make([]byte, 0, len(in)), in, strict)
}

// AppendCanonicalJSON appends the canonical form of in to dst; see
// CanonicalJSON. On error dst is returned unchanged in length.
func AppendCanonicalJSON(dst, in []byte, strict bool) ([]byte, error) {
	c := canonPool.Get().(*canonicaliser)
	c.in, c.pos, c.out, c.strict = in, 0, dst, strict
	err := c.value(0)
	if err == nil {
		c.skipWS()
		if c.pos != len(c.in) {
			err = c.fail("trailing data after the value")
		}
	}
	out := c.out
	c.in, c.out = nil, nil
	c.members = c.members[:0]
	c.arena = c.arena[:0]
	if cap(c.scratch) > 1<<20 {
		c.scratch = nil // do not pin huge buffers in the pool
	}
	canonPool.Put(c)
	if err != nil {
		return dst, err
	}
	return out, nil
}

var canonPool = sync.Pool{New: func() any { return new(canonicaliser) }}

// canonicaliser is a single-pass recursive-descent parser that writes the
// canonical form as it reads. Object members are written in input order and,
// only when that order is not already sorted, permuted in place afterwards,
// so already-canonical input (the common case for stored events) is copied
// through with one pass and no per-member allocation.
type canonicaliser struct {
	in      []byte
	pos     int
	out     []byte
	strict  bool
	members []member // stack of the members of all open objects
	scratch []byte   // used while permuting one object's members
	arena   []byte   // decoded keys that contained escapes
}

// member is one encoded `"key":value` span of out and its decoded key, which
// is what the sort order and duplicate check are defined on.
type member struct {
	key        []byte
	start, end int
}

func (c *canonicaliser) fail(msg string) error {
	return &JSONError{Offset: c.pos, Msg: msg}
}

func (c *canonicaliser) skipWS() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canonicaliser) value(depth int) error {
	c.skipWS()
	if c.pos >= len(c.in) {
		return c.fail("unexpected end of input")
	}
	switch b := c.in[c.pos]; {
	case b == '{':
		return c.object(depth + 1)
	case b == '[':
		return c.array(depth + 1)
	case b == '"':
		_, err := c.str(false)
		return err
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '-' || (b >= '0' && b <= '9'):
		return c.number()
	default:
		return c.fail("unexpected character")
	}
}

func (c *canonicaliser) literal(lit string) error {
	if len(c.in)-c.pos < len(lit) || string(c.in[c.pos:c.pos+len(lit)]) != lit {
		return c.fail("invalid literal")
	}
	c.pos += len(lit)
	c.out = append(c.out, lit...)
	return nil
}

func (c *canonicaliser) array(depth int) error {
	if depth > MaxJSONDepth {
		return c.fail("nesting too deep")
	}
	c.pos++
	c.out = append(c.out, '[')
	c.skipWS()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		c.out = append(c.out, ']')
		return nil
	}
	for {
		if err := c.value(depth); err != nil {
			return err
		}
		c.skipWS()
		if c.pos >= len(c.in) {
			return c.fail("unterminated array")
		}
		switch c.in[c.pos] {
		case ',':
			c.pos++
			c.out = append(c.out, ',')
		case ']':
			c.pos++
			c.out = append(c.out, ']')
			return nil
		default:
			return c.fail("expected ',' or ']'")
		}
	}
}

func (c *canonicaliser) object(depth int) error {
	if depth > MaxJSONDepth {
		return c.fail("nesting too deep")
	}
	c.pos++
	c.out = append(c.out, '{')
	body := len(c.out)
	base := len(c.members)
	c.skipWS()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		c.out = append(c.out, '}')
		return nil
	}
	for {
		c.skipWS()
		if c.pos >= len(c.in) || c.in[c.pos] != '"' {
			return c.fail("expected an object key")
		}
		start := len(c.out)
		key, err := c.str(true)
		if err != nil {
			return err
		}
		c.skipWS()
		if c.pos >= len(c.in) || c.in[c.pos] != ':' {
			return c.fail("expected ':'")
		}
		c.pos++
		c.out = append(c.out, ':')
		if err := c.value(depth); err != nil {
			return err
		}
		c.members = append(c.members, member{key: key, start: start, end: len(c.out)})
		c.skipWS()
		if c.pos >= len(c.in) {
			return c.fail("unterminated object")
		}
		if c.in[c.pos] == ',' {
			c.pos++
			c.out = append(c.out, ',')
			continue
		}
		if c.in[c.pos] != '}' {
			return c.fail("expected ',' or '}'")
		}
		c.pos++
		break
	}
	ms := c.members[base:]
	sorted := true
	for i := 1; i < len(ms); i++ {
		switch bytes.Compare(ms[i-1].key, ms[i].key) {
		case 0:
			return c.fail("duplicate object key " + strconv.Quote(string(ms[i].key)))
		case 1:
			sorted = false
		}
	}
	if !sorted {
		// UTF-8 byte order is code point order, so comparing the decoded
		// keys bytewise is exactly the order the spec asks for.
		slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		for i := 1; i < len(ms); i++ {
			if bytes.Equal(ms[i-1].key, ms[i].key) {
				return c.fail("duplicate object key " + strconv.Quote(string(ms[i].key)))
			}
		}
		c.scratch = append(c.scratch[:0], c.out[body:]...)
		c.out = c.out[:body]
		for i, m := range ms {
			if i > 0 {
				c.out = append(c.out, ',')
			}
			c.out = append(c.out, c.scratch[m.start-body:m.end-body]...)
		}
	}
	c.members = c.members[:base]
	c.out = append(c.out, '}')
	return nil
}

// str reads the string at c.pos and writes its canonical encoding. If key is
// set it returns the decoded bytes, which alias the input when the string
// had no escapes.
func (c *canonicaliser) str(key bool) ([]byte, error) {
	c.pos++ // opening quote
	c.out = append(c.out, '"')
	encStart := len(c.out)
	escaped := false
	seg := c.pos // start of the current run of literal bytes
	nonASCII := false
	flush := func(end int) error {
		if nonASCII && !utf8.Valid(c.in[seg:end]) {
			return c.fail("invalid UTF-8 in string")
		}
		c.out = append(c.out, c.in[seg:end]...)
		nonASCII = false
		return nil
	}
	for c.pos < len(c.in) {
		b := c.in[c.pos]
		switch {
		case b == '"':
			if err := flush(c.pos); err != nil {
				return nil, err
			}
			litStart := seg
			c.pos++
			c.out = append(c.out, '"')
			if !key {
				return nil, nil
			}
			if !escaped {
				return c.in[litStart : c.pos-1 : c.pos-1], nil
			}
			start := len(c.arena)
			c.arena = appendUnescapedCanonical(c.arena, c.out[encStart:len(c.out)-1])
			return c.arena[start:len(c.arena):len(c.arena)], nil
		case b == '\\':
			if err := flush(c.pos); err != nil {
				return nil, err
			}
			escaped = true
			if err := c.escape(); err != nil {
				return nil, err
			}
			seg = c.pos
		case b < 0x20:
			return nil, c.fail("unescaped control character in string")
		default:
			if b >= utf8.RuneSelf {
				nonASCII = true
			}
			c.pos++
		}
	}
	return nil, c.fail("unterminated string")
}

// escape decodes one escape sequence at c.pos and writes the character in
// canonical form.
func (c *canonicaliser) escape() error {
	if c.pos+1 >= len(c.in) {
		return c.fail("unterminated escape")
	}
	var r rune
	switch c.in[c.pos+1] {
	case '"':
		r = '"'
	case '\\':
		r = '\\'
	case '/':
		r = '/'
	case 'b':
		r = '\b'
	case 'f':
		r = '\f'
	case 'n':
		r = '\n'
	case 'r':
		r = '\r'
	case 't':
		r = '\t'
	case 'u':
		r1, ok := hex4(c.in, c.pos+2)
		if !ok {
			return c.fail("invalid \\u escape")
		}
		c.pos += 6
		switch {
		case utf16.IsSurrogate(r1):
			if r1 >= 0xDC00 {
				return c.fail("unpaired surrogate in \\u escape")
			}
			if c.pos+1 >= len(c.in) || c.in[c.pos] != '\\' || c.in[c.pos+1] != 'u' {
				return c.fail("unpaired surrogate in \\u escape")
			}
			r2, ok := hex4(c.in, c.pos+2)
			if !ok || r2 < 0xDC00 || r2 > 0xDFFF {
				return c.fail("unpaired surrogate in \\u escape")
			}
			c.pos += 6
			r = utf16.DecodeRune(r1, r2)
		default:
			r = r1
		}
		c.out = appendCanonicalRune(c.out, r)
		return nil
	default:
		return c.fail("invalid escape")
	}
	c.pos += 2
	c.out = appendCanonicalRune(c.out, r)
	return nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, h := range b[i : i+4] {
		r <<= 4
		switch {
		case h >= '0' && h <= '9':
			r |= rune(h - '0')
		case h >= 'a' && h <= 'f':
			r |= rune(h - 'a' + 10)
		case h >= 'A' && h <= 'F':
			r |= rune(h - 'A' + 10)
		default:
			return 0, false
		}
	}
	return r, true
}

const hexDigits = "0123456789abcdef"

// appendCanonicalRune writes r as canonical JSON string content.
func appendCanonicalRune(dst []byte, r rune) []byte {
	switch r {
	case '"':
		return append(dst, '\\', '"')
	case '\\':
		return append(dst, '\\', '\\')
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	if r < 0x20 {
		return append(dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xF])
	}
	return utf8.AppendRune(dst, r)
}

// appendUnescapedCanonical decodes the content of a canonical JSON string
// (only the escapes appendCanonicalRune writes can occur).
func appendUnescapedCanonical(dst, enc []byte) []byte {
	for i := 0; i < len(enc); i++ {
		b := enc[i]
		if b != '\\' || i+1 >= len(enc) {
			dst = append(dst, b)
			continue
		}
		i++
		switch enc[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if r, ok := hex4(enc, i+1); ok {
				dst = utf8.AppendRune(dst, r)
				i += 4
			}
		default: // '"' and '\\'
			dst = append(dst, enc[i])
		}
	}
	return dst
}

func (c *canonicaliser) number() error {
	in := c.in
	start := c.pos
	i := c.pos
	if in[i] == '-' {
		i++
	}
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && in[i] >= '1' && in[i] <= '9':
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	default:
		c.pos = i
		return c.fail("invalid number")
	}
	isInt := true
	if i < len(in) && in[i] == '.' {
		isInt = false
		i++
		d := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == d {
			c.pos = i
			return c.fail("invalid number")
		}
	}
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		isInt = false
		i++
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			i++
		}
		d := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == d {
			c.pos = i
			return c.fail("invalid number")
		}
	}
	lit := in[start:i]
	if isInt {
		digits := lit
		if digits[0] == '-' {
			digits = digits[1:]
		}
		if len(digits) == 1 && digits[0] == '0' {
			c.out = append(c.out, '0') // "-0" MUST NOT appear
			c.pos = i
			return nil
		}
		if c.strict {
			if len(digits) > 16 {
				return c.fail("integer out of the canonical JSON range")
			}
			if n, _ := strconv.ParseUint(string(digits), 10, 64); n > maxSafeInteger {
				return c.fail("integer out of the canonical JSON range")
			}
		}
		c.out = append(c.out, lit...)
		c.pos = i
		return nil
	}
	if c.strict {
		return c.fail("numbers must be integers without fraction or exponent")
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil { // only out of range is possible here
		return c.fail("number out of range")
	}
	c.pos = i
	if f == math.Trunc(f) && math.Abs(f) <= maxSafeInteger {
		c.out = strconv.AppendInt(c.out, int64(f), 10)
		return nil
	}
	c.out = appendPythonFloat(c.out, f)
	return nil
}

// appendPythonFloat writes f the way Python's repr does (shortest digits
// that round-trip; positional notation for decimal exponents in [-4, 16),
// scientific with a signed exponent of at least two digits otherwise).
// Old-room events containing floats were hashed by Synapse this way.
func appendPythonFloat(dst []byte, f float64) []byte {
	if f == 0 {
		if math.Signbit(f) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	exp := int(math.Floor(math.Log10(math.Abs(f))))
	// Log10 may be off by one near powers of ten; derive the exponent from
	// the shortest scientific representation instead.
	var tmp [32]byte
	sci := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	if e := bytes.IndexByte(sci, 'e'); e >= 0 {
		if n, err := strconv.Atoi(string(sci[e+1:])); err == nil {
			exp = n
		}
	}
	if exp >= -4 && exp < 16 {
		start := len(dst)
		dst = strconv.AppendFloat(dst, f, 'f', -1, 64)
		if bytes.IndexByte(dst[start:], '.') < 0 {
			dst = append(dst, '.', '0')
		}
		return dst
	}
	return append(dst, sci...)
}

// JSONError reports why input is not acceptable JSON. It wraps ErrBadJSON.
type JSONError struct {
	Offset int // byte offset in the input where the problem was found
	Msg    string
}

func (e *JSONError) Error() string {
	return "event: bad JSON at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

func (e *JSONError) Unwrap() error { return ErrBadJSON }
