package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// The examples of the spec appendix "Canonical JSON".
func TestCanonicalJSONSpecExamples(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{}`, `{}`},
		{"{\n    \"one\": 1,\n    \"two\": \"Two\"\n}", `{"one":1,"two":"Two"}`},
		{"{\n    \"b\": \"2\",\n    \"a\": \"1\"\n}", `{"a":"1","b":"2"}`},
		{`{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`},
		{`{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}`, `{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{`{"a": "日本語"}`, `{"a":"日本語"}`},
		{`{"本": 2, "日": 1}`, `{"日":1,"本":2}`},
		{`{"a": "\u65E5"}`, `{"a":"日"}`},
		{`{"a": null}`, `{"a":null}`},
	}
	for _, tc := range cases {
		for _, strict := range []bool{false, true} {
			got, err := CanonicalJSON([]byte(tc.in), strict)
			if err != nil {
				t.Errorf("%q strict=%v: %v", tc.in, strict, err)
				continue
			}
			if string(got) != tc.want {
				t.Errorf("%q strict=%v:\n got %s\nwant %s", tc.in, strict, got, tc.want)
			}
		}
	}
	// The spec's number example normalises -0 and 1e10. Exponents are
	// refused in strict mode (as Synapse refuses floats), so it holds for the
	// lenient mode of room versions 1–5.
	got, err := CanonicalJSON([]byte(`{"a": -0, "b": 1e10}`), false)
	if err != nil || string(got) != `{"a":0,"b":10000000000}` {
		t.Errorf("number example: %s, %v", got, err)
	}
	if _, err := CanonicalJSON([]byte(`{"b": 1e10}`), true); !errors.Is(err, ErrBadJSON) {
		t.Errorf("strict mode accepted an exponent: %v", err)
	}
	if got, err := CanonicalJSON([]byte(`{"a": -0}`), true); err != nil || string(got) != `{"a":0}` {
		t.Errorf("strict -0: %s, %v", got, err)
	}
}

func TestCanonicalJSONEscapes(t *testing.T) {
	cases := []struct{ in, want string }{
		{`"\/"`, `"/"`},
		{`"/"`, `"/"`},
		{`"\b\f\n\r\t"`, `"\b\f\n\r\t"`},
		{`"\u0008\u000C\u000a"`, `"\b\f\n"`},
		{`"\u0000\u001F\u000B\u001e"`, `"\u0000\u001f\u000b\u001e"`},
		{`"\u007f"`, "\"\x7f\""},
		{`"\"\\"`, `"\"\\"`},
		{`"\u0022\u005C"`, `"\"\\"`},
		{`"\u00e9\u2028\uFFFF"`, "\"é\u2028\uffff\""},
		{`"\ud83d\ude00"`, `"😀"`},
		{`"😀"`, `"😀"`},
		{`"<>&"`, `"<>&"`},
		{`[1,-2,0,-0,9007199254740991,-9007199254740991]`, `[1,-2,0,0,9007199254740991,-9007199254740991]`},
		{` [ true , false , null ] `, `[true,false,null]`},
		// Keys sort by code point of the decoded key, not of its escape.
		{`{"\u000a":1,"A":2,"\"":3}`, `{"\n":1,"\"":3,"A":2}`},
		{`{"é":1,"z":2,"😀":3,"\uffff":4}`, "{\"z\":2,\"é\":1,\"\uffff\":4,\"😀\":3}"},
	}
	for _, tc := range cases {
		got, err := CanonicalJSON([]byte(tc.in), true)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalJSONRejects(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	okDeep := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	if _, err := CanonicalJSON([]byte(okDeep), true); err != nil {
		t.Errorf("depth %d refused: %v", MaxJSONDepth, err)
	}
	bad := map[string]bool{ // input -> also bad when lenient
		deep:                      true,
		`{"a":1,"a":2}`:           true,
		`{"b":1,"a":2,"b":3}`:     true,
		`{"a":1,"\u0061":2}`:      true,
		`{"a":1} x`:               true,
		`{"a":1}{}`:               true,
		"\"\xff\"":                true,
		"\"\xed\xa0\x80\"":        true, // UTF-8 encoded surrogate
		`"\ud800"`:                true,
		`"\udc00\ud800"`:          true,
		`"\ud800\u0041"`:          true,
		"\"a\tb\"":                true,
		`"\x"`:                    true,
		`"\u12"`:                  true,
		`"abc`:                    true,
		`{"a" 1}`:                 true,
		`{"a":1,}`:                true,
		`[1,]`:                    true,
		`[1 2]`:                   true,
		`01`:                      true,
		`-`:                       true,
		`1.`:                      true,
		`1e`:                      true,
		`+1`:                      true,
		`.5`:                      true,
		`NaN`:                     true,
		`tru`:                     true,
		`nul`:                     true,
		``:                        true,
		`   `:                     true,
		`{`:                       true,
		`1e400`:                   true,
		"\xef\xbb\xbf{}":          true, // BOM
		`9007199254740992`:        false,
		`-9007199254740992`:       false,
		`12345678901234567890123`: false,
		`1.5`:                     false,
		`1e2`:                     false,
		`1.0`:                     false,
	}
	for in, lenientToo := range bad {
		if _, err := CanonicalJSON([]byte(in), true); !errors.Is(err, ErrBadJSON) {
			t.Errorf("strict accepted %.40q: %v", in, err)
		}
		_, err := CanonicalJSON([]byte(in), false)
		if lenientToo && !errors.Is(err, ErrBadJSON) {
			t.Errorf("lenient accepted %.40q", in)
		}
		if !lenientToo && err != nil {
			t.Errorf("lenient refused %.40q: %v", in, err)
		}
	}
}

func TestCanonicalJSONLenientNumbers(t *testing.T) {
	cases := map[string]string{
		`1.5`:                     `1.5`,
		`1.0`:                     `1`,
		`100E-2`:                  `1`,
		`-0.0`:                    `0`,
		`1e10`:                    `10000000000`,
		`12345678901234567890123`: `12345678901234567890123`,
		`9007199254740993.0`:      `9007199254740992.0`,
		`1e16`:                    `1e+16`,
		`1.25e17`:                 `1.25e+17`,
		`0.0001`:                  `0.0001`,
		`0.00001`:                 `1e-05`,
		`-2.5e-7`:                 `-2.5e-07`,
		`123456.789`:              `123456.789`,
		`1e300`:                   `1e+300`,
	}
	for in, want := range cases {
		got, err := CanonicalJSON([]byte(in), false)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %s, %v; want %s", in, got, err, want)
		}
	}
}

// --- property tests against an independent, map-based reference encoder ---

// refCanonical is a deliberately naive encoder straight from the spec text,
// used as the oracle: decode with encoding/json, sort keys, escape minimally.
func refCanonical(v any) string {
	var sb strings.Builder
	var enc func(v any)
	enc = func(v any) {
		switch x := v.(type) {
		case nil:
			sb.WriteString("null")
		case bool:
			fmt.Fprint(&sb, x)
		case json.Number:
			s := x.String()
			if s == "-0" {
				s = "0"
			}
			sb.WriteString(s)
		case string:
			sb.WriteByte('"')
			for _, r := range x {
				switch {
				case r == '"':
					sb.WriteString(`\"`)
				case r == '\\':
					sb.WriteString(`\\`)
				case r == '\b':
					sb.WriteString(`\b`)
				case r == '\f':
					sb.WriteString(`\f`)
				case r == '\n':
					sb.WriteString(`\n`)
				case r == '\r':
					sb.WriteString(`\r`)
				case r == '\t':
					sb.WriteString(`\t`)
				case r < 0x20:
					fmt.Fprintf(&sb, `\u%04x`, r)
				default:
					sb.WriteRune(r)
				}
			}
			sb.WriteByte('"')
		case []any:
			sb.WriteByte('[')
			for i, e := range x {
				if i > 0 {
					sb.WriteByte(',')
				}
				enc(e)
			}
			sb.WriteByte(']')
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys) // byte order of UTF-8 = code point order
			sb.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					sb.WriteByte(',')
				}
				enc(k)
				sb.WriteByte(':')
				enc(x[k])
			}
			sb.WriteByte('}')
		}
	}
	enc(v)
	return sb.String()
}

func decodeAny(t testing.TB, b []byte) any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("encoding/json cannot decode %q: %v", b, err)
	}
	return v
}

// randJSON writes a random JSON value with random whitespace, key order and
// escaping. Keys are unique per object.
type jsonGen struct {
	r *rand.Rand
}

func (g jsonGen) ws(sb *strings.Builder) {
	for g.r.IntN(4) == 0 {
		sb.WriteByte(" \t\n\r"[g.r.IntN(4)])
	}
}

var sampleRunes = []rune{'a', 'b', 'Z', '0', ' ', '"', '\\', '/', '\b', '\f', '\n', '\r', '\t', 0, 0x1f, 0x7f, 'é', 'ß', '日', '本', 0x2028, 0xfffd, 0xffff, 0x1f600, 0x10ffff, '{', '}', ':', ','}

func (g jsonGen) str(sb *strings.Builder, n int) string {
	var raw []rune
	for range n {
		raw = append(raw, sampleRunes[g.r.IntN(len(sampleRunes))])
	}
	sb.WriteByte('"')
	for _, r := range raw {
		switch {
		case r == '"' || r == '\\' || r < 0x20 || g.r.IntN(6) == 0:
			if r >= 0x10000 {
				r1, r2 := 0xD800+((r-0x10000)>>10), 0xDC00+((r-0x10000)&0x3ff)
				fmt.Fprintf(sb, `\u%04X\u%04x`, r1, r2)
			} else if r == '/' && g.r.IntN(2) == 0 {
				sb.WriteString(`\/`)
			} else {
				fmt.Fprintf(sb, `\u%04x`, r)
			}
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return string(raw)
}

func (g jsonGen) value(sb *strings.Builder, depth int) {
	g.ws(sb)
	k := g.r.IntN(9)
	if depth > 4 && k >= 7 {
		k = g.r.IntN(7)
	}
	switch k {
	case 0:
		sb.WriteString("null")
	case 1:
		sb.WriteString([]string{"true", "false"}[g.r.IntN(2)])
	case 2, 3:
		n := g.r.Int64N(2*maxSafeInteger+1) - maxSafeInteger
		if g.r.IntN(2) == 0 {
			n %= 1000
		}
		fmt.Fprint(sb, n)
	case 4, 5, 6:
		g.str(sb, g.r.IntN(8))
	case 7:
		sb.WriteByte('[')
		n := g.r.IntN(5)
		for i := range n {
			if i > 0 {
				g.ws(sb)
				sb.WriteByte(',')
			}
			g.value(sb, depth+1)
		}
		g.ws(sb)
		sb.WriteByte(']')
	case 8:
		sb.WriteByte('{')
		n := g.r.IntN(6)
		seen := map[string]bool{}
		first := true
		for range n {
			var ks strings.Builder
			key := g.str(&ks, g.r.IntN(4))
			if seen[key] {
				continue
			}
			seen[key] = true
			if !first {
				g.ws(sb)
				sb.WriteByte(',')
			}
			first = false
			g.ws(sb)
			sb.WriteString(ks.String())
			g.ws(sb)
			sb.WriteByte(':')
			g.value(sb, depth+1)
		}
		g.ws(sb)
		sb.WriteByte('}')
	}
	g.ws(sb)
}

func TestCanonicalJSONProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	g := jsonGen{r}
	for i := range 20000 {
		var sb strings.Builder
		g.value(&sb, 0)
		in := []byte(sb.String())
		out, err := CanonicalJSON(in, true)
		if err != nil {
			t.Fatalf("case %d: %q: %v", i, in, err)
		}
		if !utf8.Valid(out) {
			t.Fatalf("case %d: output not UTF-8", i)
		}
		// Idempotent.
		again, err := CanonicalJSON(out, true)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("case %d: not idempotent:\n%s\n%s (%v)", i, out, again, err)
		}
		// Semantically equal to the input.
		vin, vout := decodeAny(t, in), decodeAny(t, out)
		if !reflect.DeepEqual(vin, vout) {
			t.Fatalf("case %d: meaning changed:\n in %q\nout %q", i, in, out)
		}
		// Byte-identical to the naive reference encoder.
		if ref := refCanonical(vin); ref != string(out) {
			t.Fatalf("case %d: differs from reference:\n got %q\nwant %q", i, out, ref)
		}
		// Append variant appends.
		pre := []byte("xyz")
		app, err := AppendCanonicalJSON(pre, in, true)
		if err != nil || string(app[:3]) != "xyz" || !bytes.Equal(app[3:], out) {
			t.Fatalf("case %d: AppendCanonicalJSON differs", i)
		}
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"b":"2","a":"1"}`, `{"a":-0,"b":1e10}`, `"\ud83d\ude00"`,
		`[1,2,{"x":[true,false,null]}]`, `{"\u000a":1,"A":2}`, `1.5`, `{"a":{"a":{"a":{}}}}`, "\"\xff\""} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, strict bool) {
		out, err := CanonicalJSON(in, strict)
		if err != nil {
			if !errors.Is(err, ErrBadJSON) {
				t.Fatalf("error does not wrap ErrBadJSON: %v", err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("accepted what encoding/json calls invalid: %q", in)
		}
		again, err := CanonicalJSON(out, strict)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", in, out, again, err)
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON output %q", out)
		}
		if strict {
			// Byte-identical to the naive reference encoder.
			if ref := refCanonical(decodeAny(t, in)); ref != string(out) {
				t.Fatalf("differs from reference:\n got %q\nwant %q", out, ref)
			}
		}
	})
}

var benchEvent = []byte(`{
  "auth_events": ["$aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29y", "$Ym9uam91ciBib25qb3VyIGJvbmpvdXIgYm9uam91cg", "$c2FsdXQgc2FsdXQgc2FsdXQgc2FsdXQgc2FsdXQgc2E"],
  "type": "m.room.message",
  "sender": "@alice:example.org",
  "room_id": "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ",
  "origin_server_ts": 1700000000000,
  "depth": 1234,
  "content": {"msgtype": "m.text", "body": "Hello there, this is a fairly typical message with a bit of text — and an émoji 🎉.",
    "m.mentions": {"user_ids": ["@bob:example.org"]}, "format": "org.matrix.custom.html",
    "formatted_body": "<b>Hello</b> there, this is a fairly typical message"},
  "prev_events": ["$ZGVwdGgtb25lLWRlcHRoLW9uZS1kZXB0aC1vbmUtZGVw"],
  "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
  "signatures": {"example.org": {"ed25519:a_AbCd": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},
  "unsigned": {"age": 1234}
}`)

func BenchmarkCanonicalJSON(b *testing.B) {
	canon, _ := CanonicalJSON(benchEvent, true)
	for _, c := range []struct {
		name string
		in   []byte
	}{{"pretty", benchEvent}, {"canonical", canon}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			buf := make([]byte, 0, 4096)
			for b.Loop() {
				var err error
				buf, err = AppendCanonicalJSON(buf[:0], c.in, true)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("alloc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := CanonicalJSON(benchEvent, true); err != nil {
				b.Fatal(err)
			}
		}
	})
}
