package event

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// The helpers in this file work on JSON that is already canonical (output
// of AppendCanonicalJSON or of these helpers). Canonical input has no
// whitespace, sorted unique keys and minimal escapes, which makes scanning
// trivial and lets events be edited (keys removed, inserted, filtered)
// without decoding them into maps. They assume well-formed canonical input
// and never panic on other input, but their result is then unspecified.

// skipValue returns the index just past the canonical value starting at i.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']':
				return i
			}
			i++
		}
		return i
	}
}

// skipString returns the index just past the string whose quote is at i.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// objIter walks the members of a canonical object.
type objIter struct {
	b []byte
	i int
}

func newObjIter(obj []byte) objIter {
	if len(obj) < 2 || obj[0] != '{' {
		return objIter{b: obj, i: len(obj)}
	}
	return objIter{b: obj, i: 1}
}

// next returns the next member: key is the encoded key without quotes (equal
// to the decoded key unless it contains a backslash), val the encoded value.
func (it *objIter) next() (key, val []byte, ok bool) {
	b, i := it.b, it.i
	if i >= len(b) || b[i] != '"' {
		return nil, nil, false
	}
	ke := skipString(b, i)
	if ke >= len(b) || b[ke] != ':' {
		it.i = len(b)
		return nil, nil, false
	}
	key = b[i+1 : ke-1]
	ve := skipValue(b, ke+1)
	val = b[ke+1 : ve]
	if ve < len(b) && b[ve] == ',' {
		ve++
	}
	it.i = ve
	return key, val, true
}

// getMember returns the value of key name in a canonical object.
func getMember(obj []byte, name string) ([]byte, bool) {
	it := newObjIter(obj)
	for {
		k, v, ok := it.next()
		if !ok {
			return nil, false
		}
		if string(k) == name {
			return v, true
		}
	}
}

// compareKey compares an encoded canonical key with a decoded name in code
// point order.
func compareKey(enc []byte, name string) int {
	if bytes.IndexByte(enc, '\\') < 0 {
		return bytes.Compare(enc, []byte(name))
	}
	var tmp [64]byte
	return bytes.Compare(appendUnescapedCanonical(tmp[:0], enc), []byte(name))
}

// appendWithout appends obj minus the members whose key is one of names.
func appendWithout(dst, obj []byte, names ...string) []byte {
	dst = append(dst, '{')
	first := true
	it := newObjIter(obj)
outer:
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		for _, n := range names {
			if string(k) == n {
				continue outer
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendMember(dst, k, v)
	}
	return append(dst, '}')
}

func appendMember(dst, encKey, val []byte) []byte {
	dst = append(dst, '"')
	dst = append(dst, encKey...)
	dst = append(dst, '"', ':')
	return append(dst, val...)
}

// appendWithMember appends obj with member name set to val (canonical),
// replacing any existing value and keeping the keys sorted.
func appendWithMember(dst, obj []byte, name string, val []byte) []byte {
	dst = append(dst, '{')
	first, done := true, false
	sep := func() {
		if !first {
			dst = append(dst, ',')
		}
		first = false
	}
	it := newObjIter(obj)
	for {
		k, v, ok := it.next()
		if !ok {
			break
		}
		if !done {
			switch c := compareKey(k, name); {
			case c == 0:
				continue // replaced below, in the same position
			case c > 0:
				sep()
				dst = appendJSONString(dst, name)
				dst = append(dst, ':')
				dst = append(dst, val...)
				done = true
			}
		}
		sep()
		dst = appendMember(dst, k, v)
	}
	if !done {
		sep()
		dst = appendJSONString(dst, name)
		dst = append(dst, ':')
		dst = append(dst, val...)
	}
	return append(dst, '}')
}

// appendJSONString appends s as a canonical JSON string. s is assumed to be
// valid UTF-8 (invalid bytes are replaced by U+FFFD so the output is always
// valid JSON).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b >= 0x20 && b != '"' && b != '\\' && b < utf8.RuneSelf {
			i++
			continue
		}
		if b >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = appendCanonicalRune(dst, rune(b))
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// stringValue decodes a canonical JSON string value.
func stringValue(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return "", false
	}
	enc := v[1 : len(v)-1]
	if bytes.IndexByte(enc, '\\') < 0 {
		return string(enc), true
	}
	return string(appendUnescapedCanonical(nil, enc)), true
}

// intValue decodes a canonical JSON number that must be an int64 integer.
func intValue(v []byte) (int64, bool) {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

// stringArray decodes a canonical array of strings, at most max entries each
// at most maxLen bytes.
// pairArray reads the prev_events or auth_events of the event format of
// room versions 1 and 2: [[event ID, {hashes}], …], returning the IDs.
func pairArray(v []byte, max, maxLen int) ([]string, error) {
	if len(v) < 2 || v[0] != '[' {
		return nil, errBadEvent("expected an array of [event ID, hashes] pairs")
	}
	var out []string
	i := 1
	for i < len(v)-1 {
		if v[i] != '[' {
			return nil, errBadEvent("expected an array of [event ID, hashes] pairs")
		}
		e := skipValue(v, i)
		pair := v[i:e]
		if len(pair) < 2 || pair[1] != '"' {
			return nil, errBadEvent("expected an array of [event ID, hashes] pairs")
		}
		se := skipString(pair, 1)
		if se >= len(pair) || pair[se] != ',' || pair[se+1] != '{' || skipValue(pair, se+1) != len(pair)-1 {
			return nil, errBadEvent("expected an array of [event ID, hashes] pairs")
		}
		s, _ := stringValue(pair[1:se])
		if len(s) > maxLen {
			return nil, errTooLarge("array entry longer than " + strconv.Itoa(maxLen) + " bytes")
		}
		if len(out) == max {
			return nil, errBadEvent("more than " + strconv.Itoa(max) + " entries")
		}
		out = append(out, s)
		i = e
		if i < len(v)-1 {
			if v[i] != ',' {
				return nil, errBadEvent("expected an array of [event ID, hashes] pairs")
			}
			i++
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func stringArray(v []byte, max, maxLen int) ([]string, error) {
	if len(v) < 2 || v[0] != '[' {
		return nil, errBadEvent("expected an array of strings")
	}
	if len(v) == 2 {
		return []string{}, nil
	}
	n := bytes.Count(v, []byte{'"'}) / 2 // upper bound, for a single allocation
	out := make([]string, 0, min(n, max+1))
	i := 1
	for i < len(v)-1 {
		if v[i] != '"' {
			return nil, errBadEvent("expected an array of strings")
		}
		e := skipString(v, i)
		s, _ := stringValue(v[i:e])
		if len(s) > maxLen {
			return nil, errTooLarge("array entry longer than " + strconv.Itoa(maxLen) + " bytes")
		}
		if len(out) == max {
			return nil, errBadEvent("more than " + strconv.Itoa(max) + " entries")
		}
		out = append(out, s)
		i = e
		if i < len(v)-1 {
			if v[i] != ',' {
				return nil, errBadEvent("expected an array of strings")
			}
			i++
		}
	}
	return out, nil
}
