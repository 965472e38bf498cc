package authrules

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file holds a small allocation-free reader for the few top-level keys
// the rules look at (content.membership, content.m.federate, one entry of
// power_levels.users, ...). The hot path — authorising an ordinary message —
// would otherwise decode three whole contents per event with encoding/json.
//
// The reader is lenient: it never panics and reports malformed input as an
// error, but it does not validate everything encoding/json would. That is
// fine because PDU contents reach this package already parsed from valid JSON
// by package event; the property tests check that on valid JSON it agrees with
// encoding/json (including "last duplicate key wins").

var errMalformed = errors.New("malformed JSON")

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString expects b[i] == '"' and returns the index just past the closing
// quote and whether the string contains escapes.
func scanString(b []byte, i int) (end int, esc bool, err error) {
	if i >= len(b) || b[i] != '"' {
		return 0, false, errMalformed
	}
	j := i + 1
	for {
		// IndexByte is vectorised; most strings have no escapes at all.
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return 0, false, errMalformed
		}
		q += j
		// The quote is escaped iff an odd number of backslashes precede it.
		n := 0
		for k := q - 1; k > i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, esc || bytes.IndexByte(b[i+1:q], '\\') >= 0, nil
		}
		esc = true
		j = q + 1
	}
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errMalformed
	}
	switch b[i] {
	case '"':
		end, _, err := scanString(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, err := scanString(b, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errMalformed
	case '}', ']', ',', ':':
		return 0, errMalformed
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				break
			}
			j++
		}
		return j, nil
	}
}

// lookup returns the raw value of key in the JSON object obj. As with
// encoding/json, the last occurrence of a duplicated key wins. found is false
// when the key is absent; err is set when obj is not an object.
func lookup(obj []byte, key string) (val []byte, found bool, err error) {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false, errMalformed
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil, false, nil
	}
	for {
		kEnd, esc, err := scanString(obj, i)
		if err != nil {
			return nil, false, err
		}
		match := keyEquals(obj[i:kEnd], esc, key)
		i = skipWS(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false, errMalformed
		}
		i = skipWS(obj, i+1)
		vEnd, err := skipValue(obj, i)
		if err != nil {
			return nil, false, err
		}
		if match {
			val, found = obj[i:vEnd], true
		}
		i = skipWS(obj, vEnd)
		if i >= len(obj) {
			return nil, false, errMalformed
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			return val, found, nil
		default:
			return nil, false, errMalformed
		}
	}
}

// keyEquals compares a quoted JSON string token with key.
func keyEquals(tok []byte, esc bool, key string) bool {
	inner := tok[1 : len(tok)-1]
	if !esc {
		if len(inner) != len(key) {
			return false
		}
		if utf8.Valid(inner) {
			return string(inner) == key // no allocation: the compiler elides it
		}
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return false
	}
	return s == key
}

// isObject reports whether raw is (syntactically starts as) a JSON object.
func isObject(raw []byte) bool { return len(raw) > 0 && raw[0] == '{' }

// stringValue decodes a raw JSON string. ok is false for any other type.
func stringValue(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if utf8.Valid(inner) && !containsEscapeOrControl(inner) {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func containsEscapeOrControl(b []byte) bool {
	for _, c := range b {
		if c == '\\' || c == '"' || c < 0x20 {
			return true
		}
	}
	return false
}

// rawEquals reports whether the raw JSON string raw decodes to s, without
// allocating in the common case.
func rawEquals(raw []byte, s string) bool {
	if len(raw) < 2 || raw[0] != '"' {
		return false
	}
	inner := raw[1 : len(raw)-1]
	if utf8.Valid(inner) && !containsEscapeOrControl(inner) {
		return string(inner) == s
	}
	d, ok := stringValue(raw)
	return ok && d == s
}

// levelKind classifies a power level value.
type levelKind int

const (
	levelOK      levelKind = iota
	levelInvalid           // not a power level in this room version
	levelFatal             // v1–v5: a float outside binary64 range; the event must be rejected
)

// maxSafeInt is the canonical JSON integer bound (Appendices, "Canonical JSON").
const maxSafeInt = 1<<53 - 1

// parseLevel reads one power level value as the room version allows.
//
//   - v10+ (IntegerPowerLevels): only JSON integers.
//   - v6–v9: JSON integers within the canonical JSON range, or strings
//     holding integers ("m.room.power_levels events accept values as strings").
//   - v1–v5: additionally floats, truncated towards zero after applying the
//     exponent; values outside binary64 range reject the event
//     ("m.room.power_levels events accept values as floats").
//
// Values that do not fit in int64 (only possible before v6, or in strings)
// saturate at the int64 bounds, the nearest this package can come to the
// unbounded integers the rules are written for.
func parseLevel(strictJSON, integerOnly bool, raw []byte) (int64, levelKind) {
	if len(raw) == 0 {
		return 0, levelInvalid
	}
	c := raw[0]
	switch {
	case c == '-' || isDigit(c):
		if isIntegerLiteral(raw) {
			v, err := strconv.ParseInt(string(raw), 10, 64)
			if err == nil {
				if strictJSON && (v > maxSafeInt || v < -maxSafeInt) {
					return 0, levelInvalid
				}
				return v, levelOK
			}
			if strictJSON {
				return 0, levelInvalid
			}
			// Fall through to the float path, which saturates.
		} else if strictJSON {
			// Canonical JSON has no fractions or exponents.
			return 0, levelInvalid
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return 0, levelFatal
			}
			return 0, levelInvalid
		}
		return saturate(math.Trunc(f)), levelOK
	case c == '"':
		if integerOnly {
			return 0, levelInvalid
		}
		s, ok := stringValue(raw)
		if !ok {
			return 0, levelInvalid
		}
		return parseStringyInt(s)
	}
	return 0, levelInvalid
}

// isIntegerLiteral reports whether raw is a JSON number without fraction or
// exponent: -?(0|[1-9][0-9]*).
func isIntegerLiteral(raw []byte) bool {
	i := 0
	if raw[0] == '-' {
		i++
	}
	if i >= len(raw) {
		return false
	}
	if raw[i] == '0' {
		return i+1 == len(raw)
	}
	for ; i < len(raw); i++ {
		if !isDigit(raw[i]) {
			return false
		}
	}
	return true
}

// parseStringyInt accepts the string form allowed before room version 10:
// optional surrounding whitespace, an optional single sign, then one or more
// decimal digits (leading zeroes allowed).
func parseStringyInt(s string) (int64, levelKind) {
	s = strings.TrimSpace(s)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, levelInvalid
	}
	var v uint64
	overflow := false
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, levelInvalid
		}
		if v > (math.MaxUint64-9)/10 {
			overflow = true
			continue
		}
		v = v*10 + uint64(s[i]-'0')
	}
	switch {
	case neg && (overflow || v > 1<<63):
		return math.MinInt64, levelOK
	case neg:
		return -int64(v-1) - 1, levelOK
	case overflow || v > math.MaxInt64:
		return math.MaxInt64, levelOK
	}
	return int64(v), levelOK
}

func saturate(f float64) int64 {
	switch {
	case f >= math.MaxInt64:
		return math.MaxInt64
	case f <= math.MinInt64:
		return math.MinInt64
	}
	return int64(f)
}

// forEachElement calls f for each raw element of the JSON array arr until f
// returns false. It reports an error when arr is not an array.
func forEachElement(arr []byte, f func([]byte) bool) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errMalformed
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		end, err := skipValue(arr, i)
		if err != nil {
			return err
		}
		if !f(arr[i:end]) {
			return nil
		}
		i = skipWS(arr, end)
		if i >= len(arr) {
			return errMalformed
		}
		switch arr[i] {
		case ',':
			i = skipWS(arr, i+1)
		case ']':
			return nil
		default:
			return errMalformed
		}
	}
}

// lookupAll scans the object obj once and stores in out[i] the raw value of
// keys[i] (nil if absent; last duplicate wins). It is the single-pass form
// of lookup for readers that need several keys of the same object.
func lookupAll(obj []byte, keys []string, out [][]byte) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errMalformed
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		kEnd, esc, err := scanString(obj, i)
		if err != nil {
			return err
		}
		match := -1
		for k, key := range keys {
			if keyEquals(obj[i:kEnd], esc, key) {
				match = k
				break
			}
		}
		i = skipWS(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return errMalformed
		}
		i = skipWS(obj, i+1)
		vEnd, err := skipValue(obj, i)
		if err != nil {
			return err
		}
		if match >= 0 {
			out[match] = obj[i:vEnd]
		}
		i = skipWS(obj, vEnd)
		if i >= len(obj) {
			return errMalformed
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			return nil
		default:
			return errMalformed
		}
	}
}
