// Package hostile holds the tests that throw bad input at the whole server:
// every registered endpoint gets malformed, truncated, oversized, wrongly
// typed, deeply nested and invalid-UTF-8 bodies, odd path parameters and
// query strings (issue 7). The server must answer each with a 4xx Matrix
// error: no 500, no panic, no hang, and it must keep serving afterwards.
package hostile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/adminclient"
	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/sso"
	"conclave/internal/sso/ssotest"
)

// logBuffer collects the server log.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// skeletons are valid bodies per route (path after the version prefix);
// mutations replace one node at a time. Routes without one get {}.
var skeletons = map[string]string{
	"POST /login":                      `{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"pw","device_id":"D","initial_device_display_name":"x","refresh_token":true}`,
	"POST /register":                   `{"username":"newuser","password":"pw-pw-pw","device_id":"D","auth":{"type":"m.login.dummy","session":"s"},"inhibit_login":false,"refresh_token":false}`,
	"POST /refresh":                    `{"refresh_token":"x"}`,
	"POST /_synapse/admin/v1/register": `{"nonce":"n","username":"u","password":"p","admin":false,"mac":"00"}`,
	"POST /createRoom": `{"preset":"private_chat","name":"n","topic":"t","invite":["@bob:localhost"],"is_direct":true,"room_version":"10","visibility":"private","room_alias_name":"al",` +
		`"creation_content":{"m.federate":false},"initial_state":[{"type":"m.room.guest_access","state_key":"","content":{"guest_access":"can_join"}}],` +
		`"power_level_content_override":{"users":{"@bob:localhost":50},"events":{"m.room.name":50}},"invite_3pid":[]}`,
	"PUT /rooms/{roomId}/send/{eventType}/{txnId}":         `{"msgtype":"m.text","body":"hi","m.relates_to":{"rel_type":"m.thread","event_id":"$x"}}`,
	"PUT /rooms/{roomId}/state/{eventType}/{stateKey...}":  `{"name":"n","membership":"join","users":{"@a:b":1}}`,
	"PUT /rooms/{roomId}/redact/{eventId}/{txnId}":         `{"reason":"r"}`,
	"POST /rooms/{roomId}/invite":                          `{"user_id":"@bob:localhost","reason":"r"}`,
	"POST /rooms/{roomId}/kick":                            `{"user_id":"@bob:localhost","reason":"r"}`,
	"POST /rooms/{roomId}/ban":                             `{"user_id":"@bob:localhost","reason":"r"}`,
	"POST /rooms/{roomId}/unban":                           `{"user_id":"@bob:localhost","reason":"r"}`,
	"POST /rooms/{roomId}/read_markers":                    `{"m.fully_read":"$e","m.read":"$e","m.read.private":"$e"}`,
	"POST /rooms/{roomId}/receipt/{receiptType}/{eventId}": `{"thread_id":"main"}`,
	"PUT /rooms/{roomId}/typing/{userId}":                  `{"typing":true,"timeout":30000}`,
	"POST /rooms/{roomId}/upgrade":                         `{"new_version":"10"}`,
	"POST /join/{roomIdOrAlias}":                           `{"reason":"r","third_party_signed":{}}`,
	"POST /user/{userId}/filter":                           `{"event_fields":["content.body"],"event_format":"client","account_data":{"types":["a"],"limit":5},"room":{"rooms":["!a:b"],"not_rooms":["!c:d"],"include_leave":true,"timeline":{"limit":10,"types":["m.*"],"not_senders":["@a:b"],"lazy_load_members":true,"contains_url":true},"state":{"types":["x"]},"ephemeral":{"not_types":["m.typing"]}},"presence":{"senders":["@a:b"]}}`,
	"PUT /user/{userId}/account_data/{type}":               `{"a":{"b":[1,2]}}`,
	"PUT /profile/{userId}/displayname":                    `{"displayname":"Alice"}`,
	"PUT /profile/{userId}/avatar_url":                     `{"avatar_url":"mxc://localhost/abc"}`,
	"PUT /presence/{userId}/status":                        `{"presence":"online","status_msg":"hi"}`,
	"PUT /sendToDevice/{eventType}/{txnId}":                `{"messages":{"@bob:localhost":{"*":{"a":1},"DEV":{"b":2}}}}`,
	"POST /keys/upload":                                    `{"device_keys":{"user_id":"@alice:localhost","device_id":"D","algorithms":["m.olm.v1.curve25519-aes-sha2"],"keys":{"curve25519:D":"k","ed25519:D":"k"},"signatures":{"@alice:localhost":{"ed25519:D":"s"}}},"one_time_keys":{"signed_curve25519:AAAA":{"key":"k","signatures":{"@alice:localhost":{"ed25519:D":"s"}}}},"fallback_keys":{"signed_curve25519:AAAB":{"key":"k","fallback":true}}}`,
	"POST /keys/query":                                     `{"device_keys":{"@alice:localhost":[],"@bob:localhost":["DEV"]},"timeout":10}`,
	"POST /keys/claim":                                     `{"one_time_keys":{"@alice:localhost":{"D":"signed_curve25519"}},"timeout":10}`,
	"POST /keys/device_signing/upload":                     `{"master_key":{"user_id":"@alice:localhost","usage":["master"],"keys":{"ed25519:K":"K"}},"self_signing_key":{"user_id":"@alice:localhost","usage":["self_signing"],"keys":{"ed25519:S":"S"}},"auth":{"type":"m.login.password","password":"x"}}`,
	"POST /keys/signatures/upload":                         `{"@alice:localhost":{"D":{"user_id":"@alice:localhost","device_id":"D","keys":{},"signatures":{"@alice:localhost":{"ed25519:K":"s"}}}}}`,
	"POST /room_keys/version":                              `{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"k","signatures":{}}}`,
	"PUT /room_keys/version/{version}":                     `{"algorithm":"m.megolm_backup.v1.curve25519-aes-sha2","auth_data":{"public_key":"k"},"version":"1"}`,
	"PUT /room_keys/keys":                                  `{"rooms":{"!r:localhost":{"sessions":{"s1":{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":{"ephemeral":"e","ciphertext":"c","mac":"m"}}}}}}`,
	"PUT /room_keys/keys/{roomId}":                         `{"sessions":{"s1":{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":{}}}}`,
	"PUT /room_keys/keys/{roomId}/{sessionId}":             `{"first_message_index":0,"forwarded_count":0,"is_verified":true,"session_data":{}}`,
	"POST /delete_devices":                                 `{"devices":["A","B"],"auth":{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"x"}}`,
	"DELETE /devices/{deviceId}":                           `{"auth":{"type":"m.login.password","password":"x","session":"s"}}`,
	"PUT /devices/{deviceId}":                              `{"display_name":"d"}`,
	"POST /account/password":                               `{"new_password":"pw2","logout_devices":false,"auth":{"type":"m.login.password","password":"x"}}`,
	"POST /account/deactivate":                             `{"erase":false,"auth":{"type":"m.login.password","password":"x"}}`,
	"PUT /directory/room/{roomAlias}":                      `{"room_id":"!r:localhost"}`,
	"PUT /directory/list/room/{roomId}":                    `{"visibility":"public"}`,
	"POST /publicRooms":                                    `{"limit":10,"since":"x","filter":{"generic_search_term":"a","room_types":[null,"m.space"]},"include_all_networks":false}`,
	"POST /user_directory/search":                          `{"search_term":"a","limit":10}`,
	"PUT /dehydrated_device":                               `{"device_id":"DH","device_data":{"algorithm":"a"},"initial_device_display_name":"d","device_keys":{},"one_time_keys":{},"fallback_keys":{}}`,
	"POST /dehydrated_device/{deviceId}/events":            `{"next_batch":"x"}`,
	"POST /rooms/{roomId}/forget":                          `{}`,
	"POST /rooms/{roomId}/leave":                           `{"reason":"r"}`,
	"POST /knock/{roomIdOrAlias}":                          `{"reason":"r"}`,
	"POST /_matrix/media/v1/create":                        `{}`,
}

// hostileValues replace one node of a skeleton at a time.
var hostileValues = []any{
	nil, true, false, 0, -1, 1.5, 1e300, json.Number("9007199254740993"), json.Number("-1e400"),
	"", "x", "\x00", strings.Repeat("ü", 40000), invalidUTF8, loneSurrogate, "@:", "!", "$", "#",
	[]any{}, []any{nil}, []any{1, "a", map[string]any{}}, map[string]any{}, map[string]any{"": nil},
	nest(60),
}

// Markers replaced after marshalling: json.Marshal would make them valid.
const (
	invalidUTF8   = "__INVALID_UTF8__"
	loneSurrogate = "__LONE_SURROGATE__"
)

func nest(n int) any {
	var v any = "deep"
	for range n {
		v = map[string]any{"a": v}
	}
	return v
}

// structural bodies: not JSON, not an object, truncated, oversized, deep.
func structuralBodies() [][]byte {
	deepObj := strings.Repeat(`{"a":`, 100) + "1" + strings.Repeat("}", 100)
	deepArr := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	manyKeys := new(bytes.Buffer)
	manyKeys.WriteString("{")
	for i := range 40000 {
		if i > 0 {
			manyKeys.WriteString(",")
		}
		fmt.Fprintf(manyKeys, `"k%d":%d`, i, i)
	}
	manyKeys.WriteString("}")
	bigArr := `{"devices":[` + strings.Repeat(`"x",`, 200000) + `"x"],"messages":{}}`
	out := [][]byte{
		nil, []byte(" "), []byte("{"), []byte("}"), []byte("null"), []byte("[]"), []byte("1"), []byte(`"s"`), []byte("true"),
		[]byte(`{"a":1,}`), []byte(`{"a":"` + "\xff\xfe" + `"}`), []byte("\xef\xbb\xbf{}"), []byte(`{"a":"\ud800"}`),
		[]byte(`{"a":1}{"b":2}`), []byte(`{"a":1e999}`), []byte(`{"a":1,"a":"x"}`), []byte(`{"a":tru}`), []byte("\x00"),
		[]byte(deepObj), []byte(deepArr), manyKeys.Bytes(), []byte(bigArr),
		append(append([]byte(`{"a":"`), bytes.Repeat([]byte("x"), 2<<20)...), `"}`...),
	}
	return out
}

var pathHostile = []string{"", "%00", "%ff", "..", "%2e%2e", "%2F", "☃", "a%20b", strings.Repeat("a", 8000), "@", "!x", "$x", "#x:localhost", "@alice:localhost%00", "-1", "%25"}

var queryHostile = []string{
	"limit=-1", "limit=abc", "limit=99999999999999999999", "limit=1e3", "from=%ff", "from=s-1", "from=t99999999999999999999",
	"to=x", "dir=x", "since=garbage", "since=s1_2_3_4", "since=s%00", "filter=%7B", "filter=%7B%22room%22%3A1%7D", "filter=%ff", "filter=999999",
	"timeout=-5", "timeout=abc", "full_state=maybe", "set_presence=bogus", "access_token=%00", "ts=abc&dir=f", "ts=-99999999999999&dir=b",
	"width=-1&height=99999999", "width=abc", "method=x", "at=bogus", "membership=bogus", "not_membership=join&membership=leave",
	"server=%00", "server_name=..", "include=x", "recurse=maybe", "kind=bogus", "username=%ff", "token=",
	"from=" + strings.Repeat("9", 5000), "limit=" + strings.Repeat("1", 300),
}

// victimRoutes change the caller's own session or membership: each request
// gets a fresh user so the main token stays valid.
var victimRoutes = regexp.MustCompile(`/logout|/leave$|/forget$|/upgrade$|/deactivate$|/account/password$|/delete_devices$|DELETE .*/devices/`)

type request struct {
	method, path, query string
	body                []byte
	token               string
	victim              bool
}

func TestBadInputCorpus(t *testing.T) {
	logs := &logBuffer{}
	// Single sign-on on, against a real provider, so its routes are in
	// the corpus too.
	idp := ssotest.Start(t, "http://conclave.test"+sso.CallbackPath)
	s := hstest.StartLogged(t, logs, func(c *config.Config) {
		c.MaxUploadBytes = 1 << 20
		c.OIDCIssuer, c.OIDCClientID, c.OIDCClientSecret, c.PublicBaseURL = idp.Issuer, idp.ClientID, idp.ClientSecret, "http://conclave.test"
	})
	ctx := context.Background()
	if _, err := adminclient.Register(ctx, nil, s.URL, "test-shared-secret", "alice", "alice-password", true); err != nil {
		t.Fatal(err)
	}
	login := s.MustOK(t, "POST", "/_matrix/client/v3/login", "", map[string]any{"type": "m.login.password", "user": "alice", "password": "alice-password"})
	alice := &hstest.User{UserID: login.Str("user_id"), DeviceID: login.Str("device_id"), Token: login.Str("access_token")}
	bob := s.CreateUser(t, "bob")
	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat", "room_alias_name": "corpus"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", roomID), bob.Token, map[string]any{})
	eventID := s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/t1", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "hi"}).Str("event_id")
	filterID := s.MustOK(t, "POST", hstest.Path("/user/%s/filter", alice.UserID), alice.Token, map[string]any{}).Str("filter_id")
	version := s.MustOK(t, "POST", "/_matrix/client/v3/room_keys/version", alice.Token, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "k"}}).Str("version")
	up := s.Do(t, "POST", "/_matrix/media/v3/upload?filename=a.txt", alice.Token, "hello")
	mediaID := strings.TrimPrefix(up.Str("content_uri"), "mxc://localhost/")

	params := map[string]string{
		"roomId": roomID, "roomIdOrAlias": roomID, "roomAlias": "#corpus:localhost", "eventId": eventID, "userId": alice.UserID,
		"deviceId": alice.DeviceID, "eventType": "m.room.message", "stateKey...": "", "txnId": "txn", "receiptType": "m.read",
		"filterId": filterID, "version": version, "sessionId": "s1", "type": "org.example", "serverName": "localhost", "mediaId": mediaID,
		"fileName": "a.txt", "relType": "m.thread",
	}
	routes := s.HS.Routes
	if len(routes) < 100 {
		t.Fatalf("only %d routes registered", len(routes))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var reqs []request
	seen := map[string]bool{}
	nRoutes := 0
	for _, pat := range routes {
		method, path, ok := strings.Cut(pat, " ")
		if !ok || strings.Contains(path, "/r0/") || strings.Contains(path, "/media/r0/") {
			continue // r0 aliases share their v3 handler
		}
		nRoutes++
		key := method + " " + stripPrefix(path)
		seen[key] = true
		victim := victimRoutes.MatchString(method + " " + path)
		build := func(vals map[string]string) string {
			out := path
			for name, v := range vals {
				out = strings.ReplaceAll(out, "{"+name+"}", v)
			}
			for name, v := range params {
				out = strings.ReplaceAll(out, "{"+name+"}", url.PathEscape(v))
			}
			return out
		}
		valid := build(nil)
		skel := []byte(skeletons[key])
		if len(skel) == 0 {
			skel = []byte("{}")
		}
		add := func(r request) {
			r.method, r.victim = method, victim
			if r.path == "" {
				r.path = valid
			}
			reqs = append(reqs, r)
		}
		// Bodies: structural garbage with each kind of token, then the
		// skeleton with each node replaced by each hostile value.
		for _, b := range structuralBodies() {
			for _, tok := range []string{"A", "", "syt_bogus"} {
				add(request{body: b, token: tok})
			}
		}
		add(request{body: skel, token: "A"})
		muts := mutations(skel)
		rng.Shuffle(len(muts), func(i, j int) { muts[i], muts[j] = muts[j], muts[i] })
		for _, m := range muts {
			add(request{body: m, token: "A"})
		}
		// Path parameters.
		for _, name := range paramNames(path) {
			for _, v := range pathHostile {
				add(request{path: build(map[string]string{name: v}), body: skel, token: "A"})
			}
		}
		// Query strings.
		for _, q := range queryHostile {
			add(request{query: q, body: skel, token: "A"})
		}
	}
	t.Logf("%d routes (r0 aliases skipped), %d requests", nRoutes, len(reqs))

	client := &http.Client{Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var (
		mu       sync.Mutex
		failures []string
		statuses = map[int]int{}
		done     atomic.Int64
	)
	var vn atomic.Int64
	newVictim := func() *hstest.User {
		u := s.CreateUser(t, fmt.Sprintf("victim%d", vn.Add(1)))
		join := s.Do(t, "POST", hstest.Path("/join/%s", roomID), u.Token, map[string]any{})
		if join.Status != 200 {
			t.Errorf("victim join: %d %s", join.Status, join.Body)
		}
		return u
	}
	work := make(chan request)
	var wg sync.WaitGroup
	start := time.Now()
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				tok := r.token
				if tok == "A" {
					tok = alice.Token
					if r.victim {
						tok = newVictim().Token
					}
				}
				status, body, err := send(client, s.URL, r, tok)
				done.Add(1)
				mu.Lock()
				statuses[status]++
				if err != nil || status >= 500 || status == 0 {
					failures = append(failures, fmt.Sprintf("%s %s?%s (body %d bytes %q): status %d err %v: %s",
						r.method, trunc(r.path, 120), trunc(r.query, 60), len(r.body), trunc(string(r.body), 80), status, err, trunc(body, 200)))
				}
				mu.Unlock()
			}
		}()
	}
	for _, r := range reqs {
		work <- r
	}
	close(work)
	wg.Wait()
	t.Logf("%d requests in %s; statuses %v", done.Load(), time.Since(start).Round(time.Millisecond), statuses)
	if len(failures) > 0 {
		sort.Strings(failures)
		t.Errorf("%d failures:\n%s", len(failures), strings.Join(failures[:min(len(failures), 60)], "\n"))
	}
	if l := logs.String(); strings.Contains(l, "panic") || strings.Contains(l, "internal error") {
		t.Errorf("server log has panics or internal errors:\n%s", trunc(l, 20000))
	}
	// Alice's token still works (no victim route touched it), and the
	// server still serves normal traffic.
	s.MustOK(t, "GET", "/_matrix/client/v3/account/whoami", alice.Token, nil)
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after", roomID), alice.Token, map[string]any{"msgtype": "m.text", "body": "still here"})
	carol := s.CreateUser(t, "carol")
	room2 := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", carol.Token, map[string]any{}).Str("room_id")
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after", room2), carol.Token, map[string]any{"msgtype": "m.text", "body": "still here"})
	sync := s.MustOK(t, "GET", "/_matrix/client/v3/sync", carol.Token, nil)
	if !strings.Contains(string(sync.Body), "still here") {
		t.Errorf("carol's sync does not show the message sent after the corpus")
	}
	if os.Getenv("CONCLAVE_CORPUS_LOG") != "" {
		t.Log(logs.String())
	}
}

func send(c *http.Client, base string, r request, token string) (int, string, error) {
	u := base + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	var rd io.Reader
	if r.body != nil {
		rd = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, u, rd)
	if err != nil {
		// A path Go's client refuses to send (e.g. a control byte) cannot
		// reach the server either.
		return 400, "", nil
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && ue.Timeout() {
			return 0, "", fmt.Errorf("hang: %w", err)
		}
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	return res.StatusCode, string(b), nil
}

// mutations replaces each node of a JSON skeleton with each hostile value,
// and adds an unknown key to each object.
func mutations(skel []byte) [][]byte {
	var root any
	d := json.NewDecoder(bytes.NewReader(skel))
	d.UseNumber()
	if err := d.Decode(&root); err != nil {
		panic(fmt.Sprintf("bad skeleton %s: %v", skel, err))
	}
	var out [][]byte
	var walk func(path []any)
	walk = func(path []any) {
		node := get(root, path)
		if len(path) > 0 {
			for _, hv := range hostileValues {
				b, err := json.Marshal(set(root, path, hv))
				b = bytes.ReplaceAll(b, []byte(invalidUTF8), []byte("\xff\xfe"))
				b = bytes.ReplaceAll(b, []byte(loneSurrogate), []byte(`\ud800x`))
				if err == nil {
					out = append(out, b)
				}
			}
		}
		switch n := node.(type) {
		case map[string]any:
			keys := make([]string, 0, len(n))
			for k := range n {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(append(append([]any(nil), path...), k))
			}
		case []any:
			for i := range n {
				walk(append(append([]any(nil), path...), i))
			}
		}
	}
	walk(nil)
	return out
}

func get(v any, path []any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			v = v.(map[string]any)[k]
		case int:
			v = v.([]any)[k]
		}
	}
	return v
}

// set returns a deep copy of v with the node at path replaced.
func set(v any, path []any, nv any) any {
	if len(path) == 0 {
		return nv
	}
	switch n := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(n))
		for k, x := range n {
			c[k] = x
		}
		k := path[0].(string)
		c[k] = set(n[k], path[1:], nv)
		return c
	case []any:
		c := append([]any(nil), n...)
		i := path[0].(int)
		c[i] = set(n[i], path[1:], nv)
		return c
	}
	return v
}

var paramRE = regexp.MustCompile(`\{([^}]+)\}`)

func paramNames(path string) []string {
	var out []string
	for _, m := range paramRE.FindAllStringSubmatch(path, -1) {
		out = append(out, m[1])
	}
	return out
}

var prefixRE = regexp.MustCompile(`^/_matrix/client/(v3|v1|unstable/[^/]+)|^/_matrix/media/(v3|v1)|^/_matrix/client/v1/media`)

func stripPrefix(path string) string {
	if strings.HasPrefix(path, "/_synapse/") || strings.HasPrefix(path, "/_matrix/media/v1/create") {
		return path
	}
	return prefixRE.ReplaceAllString(path, "")
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
