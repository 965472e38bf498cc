package hostile

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Fuzz targets for every request decoder, driven through the real handler
// stack (middleware, auth, handler, service, store) without a network:
// whatever the input, the answer is below 500 and an error is a Matrix
// error. `make fuzz-short` runs each briefly; run one longer with e.g.
//   go test ./internal/hostile -run '^$' -fuzz '^FuzzCreateRoom$' -fuzztime 5m

type fuzzEnv struct {
	s      *hstest.Server
	logs   *logBuffer
	alice  *hstest.User
	roomID string
	event  string
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	logs := &logBuffer{}
	s := hstest.StartLogged(f, logs)
	alice := s.CreateUser(f, "alice")
	roomID := s.MustOK(f, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	ev := s.MustOK(f, "PUT", hstest.Path("/rooms/%s/send/m.room.message/f", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "x"}).Str("event_id")
	return &fuzzEnv{s: s, logs: logs, alice: alice, roomID: roomID, event: ev}
}

// serve runs one request through the server's handler and checks the answer.
func (e *fuzzEnv) serve(t *testing.T, method, target string, body []byte, token string) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// A target no HTTP client could send (spaces, control characters) is
	// not a request the server can receive: skip it rather than panic.
	req, err := http.NewRequest(method, "http://conclave"+target, rd)
	if err != nil || strings.ContainsAny(target, " \t\r\n") {
		return 0
	}
	req.RequestURI = target
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.RemoteAddr = "192.0.2.1:1234"
	rec := httptest.NewRecorder()
	e.s.HS.Handler.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s %q: %d %s\n%s", method, target, body, rec.Code, rec.Body, e.logs.String())
	}
	if rec.Code >= 400 && rec.Header().Get("Content-Type") == "application/json" {
		var m map[string]any
		// A 401 of user-interactive auth carries flows instead of an errcode.
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["errcode"] == nil && (rec.Code != 401 || m["flows"] == nil) {
			t.Fatalf("%s %s %q: %d without errcode: %s", method, target, body, rec.Code, rec.Body)
		}
	}
	return rec.Code
}

// fuzzBody fuzzes one endpoint's body, seeded with valid and broken ones.
func fuzzBody(f *testing.F, method string, path func(e *fuzzEnv) string, authed bool, seeds ...string) {
	e := newFuzzEnv(f)
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{"", "{", "[]", `{"a":"\ud800"}`, strings.Repeat(`{"a":`, 70) + "1" + strings.Repeat("}", 70)} {
		f.Add([]byte(s))
	}
	p := path(e)
	tok := ""
	if authed {
		tok = e.alice.Token
	}
	f.Fuzz(func(t *testing.T, body []byte) { e.serve(t, method, p, body, tok) })
}

func v3(p string) func(*fuzzEnv) string {
	return func(*fuzzEnv) string { return "/_matrix/client/v3" + p }
}

func FuzzCreateRoom(f *testing.F) {
	fuzzBody(f, "POST", v3("/createRoom"), true, skeletons["POST /createRoom"], `{}`, `{"preset":"trusted_private_chat","room_version":"12"}`,
		`{"initial_state":[{"type":"m.room.power_levels","content":{"users":{}}}]}`, `{"power_level_content_override":{"users":null}}`,
		`{"creation_content":{"type":"m.space","m.federate":1}}`, `{"room_alias_name":"a b"}`, `{"invite":["@x:localhost","@x:localhost"]}`)
}

func FuzzLogin(f *testing.F) {
	fuzzBody(f, "POST", v3("/login"), false, skeletons["POST /login"], `{"type":"m.login.password","user":"alice","password":"x"}`,
		`{"type":"m.login.password","identifier":{"type":"m.id.thirdparty","medium":"email","address":"a@b"},"password":"x"}`,
		`{"type":"m.login.password","identifier":{"type":"m.id.phone","country":"GB","phone":"1"},"password":"x"}`,
		`{"type":"m.login.token","token":"x"}`, `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"@alice:localhost"},"password":"x","device_id":"\u0000"}`)
}

func FuzzRegister(f *testing.F) {
	fuzzBody(f, "POST", v3("/register"), false, skeletons["POST /register"], `{"auth":{"type":"m.login.dummy"}}`,
		`{"username":"X","password":"p","auth":{"type":"m.login.registration_token","token":"t","session":"s"}}`,
		`{"username":"x","auth":{"type":"m.login.dummy"},"inhibit_login":true}`, `{"username":"`+strings.Repeat("a", 300)+`"}`)
}

func FuzzKeysUpload(f *testing.F) {
	fuzzBody(f, "POST", v3("/keys/upload"), true, skeletons["POST /keys/upload"], `{"one_time_keys":{"signed_curve25519:A":{"key":"k","signatures":{}}}}`,
		`{"fallback_keys":{"signed_curve25519:B":{"key":"k","fallback":true}},"org.matrix.msc2732.fallback_keys":{}}`,
		`{"device_keys":{"user_id":"@alice:localhost","device_id":"DEVALICE","algorithms":[],"keys":{},"signatures":{}}}`)
}

func FuzzKeysQueryClaim(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range []string{skeletons["POST /keys/query"], skeletons["POST /keys/claim"], `{"device_keys":{"@alice:localhost":null}}`, `{"one_time_keys":{"@x":{"":""}}}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, claim bool) {
		p := "/_matrix/client/v3/keys/query"
		if claim {
			p = "/_matrix/client/v3/keys/claim"
		}
		e.serve(t, "POST", p, body, e.alice.Token)
	})
}

func FuzzSendToDevice(f *testing.F) {
	fuzzBody(f, "PUT", v3("/sendToDevice/m.test/txn"), true, skeletons["PUT /sendToDevice/{eventType}/{txnId}"],
		`{"messages":{"@alice:localhost":{"*":{}}}}`, `{"messages":{"@nobody:elsewhere":{"D":1}}}`)
}

func FuzzFilterUpload(f *testing.F) {
	fuzzBody(f, "POST", v3("/user/@alice:localhost/filter"), true, skeletons["POST /user/{userId}/filter"],
		`{"room":{"timeline":{"limit":-1}}}`, `{"event_fields":["content.\\."]}`, `{"presence":{"not_types":["*"]}}`)
}

func FuzzSendEvent(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range []string{skeletons["PUT /rooms/{roomId}/send/{eventType}/{txnId}"], `{"m.relates_to":{"rel_type":"m.annotation","event_id":"` + e.event + `","key":"👍"}}`,
		`{"m.relates_to":{"rel_type":"m.replace","event_id":"` + e.event + `"},"m.new_content":{}}`, `{"m.relates_to":{"m.in_reply_to":{"event_id":1}}}`} {
		f.Add("m.room.message", "", []byte(s))
		f.Add("m.room.power_levels", "", []byte(`{"users":{"@alice:localhost":"100"}}`))
		f.Add("m.room.member", "@alice:localhost", []byte(`{"membership":"knock"}`))
	}
	f.Fuzz(func(t *testing.T, typ, stateKey string, body []byte) {
		if typ == "" {
			return
		}
		e.serve(t, "PUT", hstest.Path("/rooms/%s/send/%s/t", e.roomID, typ), body, e.alice.Token)
		e.serve(t, "PUT", hstest.Path("/rooms/%s/state/%s/%s", e.roomID, typ, stateKey), body, e.alice.Token)
	})
}

// FuzzSyncQuery: since tokens, filters (inline JSON or IDs) and flags.
func FuzzSyncQuery(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range [][3]string{{"s1_2_3", `{"room":{"timeline":{"limit":1}}}`, "true"}, {"t5", "0", ""}, {"s99999999999999999999", "", "false"},
		{"s-1", "{", ""}, {"s1__", `{"room":{"rooms":[]}}`, ""}, {"", "99", "x"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, since, filter, fullState string) {
		q := url.Values{"timeout": {"0"}}
		if since != "" {
			q.Set("since", since)
		}
		if filter != "" {
			q.Set("filter", filter)
		}
		if fullState != "" {
			q.Set("full_state", fullState)
		}
		e.serve(t, "GET", "/_matrix/client/v3/sync?"+q.Encode(), nil, e.alice.Token)
	})
}

// FuzzPagination: /messages, /context and /relations tokens, limits, filters.
func FuzzPagination(f *testing.F) {
	e := newFuzzEnv(f)
	for _, s := range [][5]string{{"t3", "t1", "b", "10", `{"types":["m.*"],"lazy_load_members":true}`}, {"s2_0_0", "", "f", "-1", ""},
		{"t99999999999999999999", "x", "b", "1e3", "{"}, {"", "", "", "", ""}, {"t0", "t0", "f", "0", `{"limit":0}`}} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, from, to, dir, limit, filter string) {
		q := url.Values{}
		for k, v := range map[string]string{"from": from, "to": to, "dir": dir, "limit": limit, "filter": filter} {
			if v != "" {
				q.Set(k, v)
			}
		}
		e.serve(t, "GET", hstest.Path("/rooms/%s/messages", e.roomID)+"?"+q.Encode(), nil, e.alice.Token)
		e.serve(t, "GET", hstest.Path("/rooms/%s/context/%s", e.roomID, e.event)+"?"+q.Encode(), nil, e.alice.Token)
		e.serve(t, "GET", "/_matrix/client/v1"+strings.TrimPrefix(hstest.Path("/rooms/%s/relations/%s", e.roomID, e.event), "/_matrix/client/v3")+"?"+q.Encode(), nil, e.alice.Token)
	})
}

// FuzzMediaIDs: server names, media IDs and thumbnail parameters in paths.
func FuzzMediaIDs(f *testing.F) {
	e := newFuzzEnv(f)
	up := e.s.MustOK(f, "POST", "/_matrix/media/v3/upload?filename=a.txt", e.alice.Token, "hello")
	id := strings.TrimPrefix(up.Str("content_uri"), "mxc://localhost/")
	for _, s := range [][3]string{{"localhost", id, "width=32&height=32&method=crop"}, {"localhost", "..", ""}, {"..", "a", "width=-1"},
		{"localhost", "a/b", "animated=maybe"}, {"remote.example:8448", "x", "timeout_ms=1"}, {"[::1]", strings.Repeat("A", 300), ""}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, server, mediaID, query string) {
		p := "/" + url.PathEscape(server) + "/" + url.PathEscape(mediaID)
		for _, pre := range []string{"/_matrix/client/v1/media/download", "/_matrix/client/v1/media/thumbnail", "/_matrix/media/v3/download"} {
			e.serve(t, "GET", pre+p+"?"+query, nil, e.alice.Token)
		}
		e.serve(t, "PUT", "/_matrix/media/v3/upload"+p, []byte("x"), e.alice.Token)
	})
}
