package federationapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/server"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestAPI(t testing.TB, c *clock) (http.Handler, *event.SigningKey) {
	key, err := event.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	mux := server.NewMux()
	New(Deps{ServerName: "hs1", SigningKey: key, Version: "1.2.3", Now: c.now}).Register(mux)
	return mux, key
}

func get(t testing.TB, h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

func TestKeyResponseRoundedAndCachedPerHour(t *testing.T) {
	c := &clock{time.Date(2025, 3, 4, 10, 20, 30, 0, time.UTC)}
	h, key := newTestAPI(t, c)
	first := get(t, h, "GET", "/_matrix/key/v2/server")
	if first.Code != 200 || first.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", first.Code, first.Header())
	}
	var body struct {
		ValidUntil int64 `json:"valid_until_ts"`
	}
	if err := json.Unmarshal(first.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 3, 11, 10, 0, 0, 0, time.UTC).UnixMilli()
	if body.ValidUntil != want {
		t.Fatalf("valid_until_ts %d, want %d", body.ValidUntil, want)
	}
	if err := event.VerifyJSON(first.Body.Bytes(), "hs1", key.ID, key.PublicKey()); err != nil {
		t.Fatal(err)
	}

	c.t = c.t.Add(39 * time.Minute) // 10:59:30, same hour
	if again := get(t, h, "GET", "/_matrix/key/v2/server"); !bytes.Equal(again.Body.Bytes(), first.Body.Bytes()) {
		t.Fatal("response changed within the hour")
	}
	c.t = c.t.Add(time.Minute) // 11:00:30
	next := get(t, h, "GET", "/_matrix/key/v2/server")
	if bytes.Equal(next.Body.Bytes(), first.Body.Bytes()) {
		t.Fatal("response not renewed in the next hour")
	}
	json.Unmarshal(next.Body.Bytes(), &body)
	if body.ValidUntil != want+3600_000 {
		t.Fatalf("valid_until_ts %d after an hour", body.ValidUntil)
	}
	if err := event.VerifyJSON(next.Body.Bytes(), "hs1", key.ID, key.PublicKey()); err != nil {
		t.Fatal(err)
	}
}

func TestVersionAndUnknown(t *testing.T) {
	h, _ := newTestAPI(t, &clock{time.Now()})
	w := get(t, h, "GET", "/_matrix/federation/v1/version")
	if w.Code != 200 || w.Body.String() != `{"server":{"name":"Conclave","version":"1.2.3"}}` {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/_matrix/federation/v1/nope", 404},
		{"GET", "/_matrix/key/v1/query/hs2", 404},
		{"POST", "/_matrix/key/v2/server", 405},
		{"PUT", "/_matrix/federation/v1/version", 405},
	} {
		w := get(t, h, c.method, c.path)
		var e struct{ Errcode string }
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != c.status || e.Errcode != "M_UNRECOGNIZED" {
			t.Errorf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
		}
	}
}

func BenchmarkServerKeys(b *testing.B) {
	h, _ := newTestAPI(b, &clock{time.Now()})
	b.ReportAllocs()
	for b.Loop() {
		if w := get(b, h, "GET", "/_matrix/key/v2/server"); w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkSignKeyResponse(b *testing.B) {
	key, _ := event.GenerateSigningKey()
	a := New(Deps{ServerName: "hs1", SigningKey: key})
	b.ReportAllocs()
	for b.Loop() {
		a.keys.body = nil
		if _, err := a.keyResponse(); err != nil {
			b.Fatal(err)
		}
	}
}

// Bad input to the notary endpoints: a clear 4xx, never a 500.
func TestNotaryBadInput(t *testing.T) {
	h, _ := newTestAPI(t, &clock{time.Now()})
	many := map[string]any{}
	for i := range MaxNotaryServers + 1 {
		many[fmt.Sprintf("hs%d", i)] = map[string]any{}
	}
	tooMany, _ := json.Marshal(map[string]any{"server_keys": many})
	for _, c := range []struct {
		method, path, body string
		status             int
		errcode            string
	}{
		{"POST", "/_matrix/key/v2/query", `{`, 400, "M_NOT_JSON"},
		{"POST", "/_matrix/key/v2/query", `[]`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys":[]}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys":{"hs2":{"k":{"minimum_valid_until_ts":"x"}}}}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys":{"hs2":[]}}`, 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", string(tooMany), 400, "M_BAD_JSON"},
		{"POST", "/_matrix/key/v2/query", `{"server_keys":{"bad name":{},"hs2":{}}}`, 200, ""},
		{"GET", "/_matrix/key/v2/query/bad%20name", "", 400, "M_INVALID_PARAM"},
		{"GET", "/_matrix/key/v2/query/hs2?minimum_valid_until_ts=1e3", "", 400, "M_INVALID_PARAM"},
		{"GET", "/_matrix/key/v2/query/hs2?minimum_valid_until_ts=99999999999999999999", "", 400, "M_INVALID_PARAM"},
		{"GET", "/_matrix/key/v2/query/hs2", "", 200, ""},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		var e struct{ Errcode string }
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != c.status || e.Errcode != c.errcode {
			t.Errorf("%s %s %.40s: %d %s", c.method, c.path, c.body, w.Code, w.Body)
		}
	}
}
