package jsonhttp

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"conclave/internal/matrix"
)

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		body, code string
	}{
		{"", matrix.ErrNotJSON}, {"  ", matrix.ErrNotJSON}, {"{", matrix.ErrNotJSON}, {"{\"a\":\"\xff\"}", matrix.ErrNotJSON},
		{"[]", matrix.ErrBadJSON}, {"1", matrix.ErrBadJSON}, {`{"a":1}{}`, matrix.ErrNotJSON},
		{strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1), matrix.ErrBadJSON},
		{`{"n":"x"}`, matrix.ErrBadJSON},
	}
	for _, c := range cases {
		var v struct{ N int }
		err := Decode([]byte(c.body), &v)
		me, ok := matrix.AsError(err)
		if !ok || me.Code != c.code || me.Status != 400 {
			t.Errorf("%q: %v, want %s", c.body, err, c.code)
		}
	}
	var v map[string]any
	if err := Decode([]byte(strings.Repeat(`{"a":`, MaxDepth)+"1"+strings.Repeat("}", MaxDepth)), &v); err != nil {
		t.Errorf("depth %d refused: %v", MaxDepth, err)
	}
}

func TestReadBodyLimit(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 11)))
	if _, err := ReadBody(r, 10); err == nil {
		t.Fatal("11 bytes accepted with limit 10")
	}
	r = httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat("x", 11)))
	r.ContentLength = -1 // chunked: the limit still holds
	if _, err := ReadBody(r, 10); err == nil {
		t.Fatal("11 chunked bytes accepted with limit 10")
	}
}

// FuzzDecode: any body gives either a decoded object or a 400 Matrix
// error (never a panic or another error), and the depth limit holds.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "{}", `{"a":[1,{"b":null}]}`, "[", `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", strings.Repeat("[", 70) + strings.Repeat("]", 70),
		`{"a":"\"{{{{"}`, `{"N":1e999}`, `{"N":-0}`, "\xef\xbb\xbf{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var m map[string]json.RawMessage
		err := Decode(body, &m)
		if err != nil {
			me, ok := matrix.AsError(err)
			if !ok || me.Status != 400 || (me.Code != matrix.ErrNotJSON && me.Code != matrix.ErrBadJSON) {
				t.Fatalf("%q: %v", body, err)
			}
			return
		}
		trimmed := bytes.TrimSpace(body)
		if !utf8.Valid(trimmed) || !json.Valid(trimmed) || trimmed[0] != '{' || depth(trimmed) > MaxDepth {
			t.Fatalf("accepted %q", body)
		}
		var s struct {
			N int      `json:"n"`
			L []string `json:"l"`
		}
		if err := Decode(body, &s); err != nil {
			if me, ok := matrix.AsError(err); !ok || me.Code != matrix.ErrBadJSON {
				t.Fatalf("struct decode of a valid object: %v", err)
			}
		}
	})
}

// FuzzRead: the size limit holds whatever the body and declared length.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"a":1}`), int64(7), int64(100))
	f.Add([]byte(`{"a":1}`), int64(-1), int64(3))
	f.Add([]byte(`{}`), int64(1000), int64(2))
	f.Fuzz(func(t *testing.T, body []byte, declared, limit int64) {
		if limit < 0 || limit > 1<<20 {
			return
		}
		r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		r.ContentLength = declared
		var v map[string]any
		err := Read(r, limit, &v)
		if err == nil && int64(len(body)) > limit {
			t.Fatalf("%d bytes read with limit %d", len(body), limit)
		}
		if err != nil {
			if _, ok := matrix.AsError(err); !ok {
				t.Fatalf("non-Matrix error %v", err)
			}
		}
	})
}
