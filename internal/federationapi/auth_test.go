package federationapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/event"
	"conclave/internal/federationapi"
	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/keyring"
	"conclave/internal/server"
	"conclave/internal/tlsutil/tlstest"
)

// keyFetcher gets /_matrix/key/v2/server from in-process servers' federation
// listeners over HTTPS (trusting the test CA), counting the fetches per
// server: what internal/fedclient does with discovery.
type keyFetcher struct {
	c    *http.Client
	mu   sync.Mutex
	urls map[string]string
	hits map[string]*atomic.Int64
}

func newKeyFetcher(t *testing.T, ca *tlstest.CA) *keyFetcher {
	return &keyFetcher{urls: map[string]string{}, hits: map[string]*atomic.Int64{}, c: fedClient(t, ca.Pool(), "")}
}

func (f *keyFetcher) add(name, url string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.urls[name] = url
}

func (f *keyFetcher) count(name string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hits[name] == nil {
		f.hits[name] = new(atomic.Int64)
	}
	return f.hits[name].Load()
}

func (f *keyFetcher) ServerKeys(ctx context.Context, name string) ([]byte, error) {
	f.count(name)
	f.mu.Lock()
	f.hits[name].Add(1)
	url, ok := f.urls[name]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s unreachable", name)
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/_matrix/key/v2/server", nil)
	// The certificate is for the server name, whatever address is dialled.
	host, _, _ := strings.Cut(name, ":")
	tr := f.c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.ServerName = host
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	return io.ReadAll(io.LimitReader(res.Body, keyring.MaxKeyResponse+1))
}

func named(name string) hstest.Option { return func(c *config.Config) { c.ServerName = name } }

// signed builds a request from origin to destination, signed with key as
// the spec's "Request Authentication" says; destination "" leaves the
// parameter out of the header (servers before v1.3) but it is signed.
func signed(t *testing.T, method, url, uri, origin, destination string, key *event.SigningKey, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url+uri, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", xMatrix(t, method, uri, origin, destination, key, body))
	return req
}

func xMatrix(t *testing.T, method, uri, origin, destination string, key *event.SigningKey, body []byte) string {
	t.Helper()
	dest := destination
	if dest == "" {
		dest = "hs1"
	}
	obj := map[string]any{"method": method, "uri": uri, "origin": origin, "destination": dest}
	if body != nil {
		obj["content"] = json.RawMessage(body)
	}
	b, _ := json.Marshal(obj)
	s, err := event.SignJSON(b, origin, key)
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Signatures map[string]map[string]string }
	json.Unmarshal(s, &out)
	h := fmt.Sprintf(`X-Matrix origin="%s",key="%s",sig="%s"`, origin, key.ID, out.Signatures[origin][key.ID])
	if destination != "" {
		h += fmt.Sprintf(`,destination="%s"`, destination)
	}
	return h
}

type fedEnv struct {
	ca     *tlstest.CA
	f      *keyFetcher
	s1, s2 *hstest.Server
	// signedURL serves hs1's federation API with one authenticated
	// endpoint that echoes the origin and body; deniedURL the same with
	// an allow list of hs3 only.
	signedURL, deniedURL string
}

func startFed(t *testing.T) *fedEnv {
	e := &fedEnv{ca: tlstest.NewCA(t, tlstest.ECSEC1)}
	e.f = newKeyFetcher(t, e.ca)
	e.s2 = hstest.Start(t, withCA(e.ca), named("hs2"))
	e.f.add("hs2", e.s2.FederationURL)
	e.s1 = hstest.StartWith(t, homeserver.Options{KeyFetcher: e.f}, withCA(e.ca), named("hs1"))
	e.f.add("hs1", e.s1.FederationURL)
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"origin":%q,"body":%q,"txn":%q}`, federationapi.Origin(r.Context()), b, r.PathValue("txnId"))
	}
	serve := func(k *keyring.Keyring) string {
		mux := server.NewMux()
		api := federationapi.New(federationapi.Deps{ServerName: "hs1", SigningKey: e.s1.HS.SigningKey, Keyring: k})
		api.Register(mux)
		api.HandleSigned(mux, "PUT /_matrix/federation/v1/send/{txnId}", echo)
		api.HandleSigned(mux, "GET /_matrix/federation/v1/query/profile", echo)
		ts := httptest.NewServer(mux)
		t.Cleanup(ts.Close)
		return ts.URL
	}
	e.signedURL = serve(e.s1.HS.Keyring)
	denied, err := keyring.New(t.Context(), keyring.Config{ServerName: "hs1", Key: e.s1.HS.SigningKey, Store: e.s1.HS.Store, Fetcher: e.f,
		Allowed: func(s string) bool { return s == "hs3" }})
	if err != nil {
		t.Fatal(err)
	}
	e.deniedURL = serve(denied)
	return e
}

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	return res.StatusCode, m
}

func TestSignedRequests(t *testing.T) {
	e := startFed(t)
	k2 := e.s2.HS.SigningKey
	other, _ := event.GenerateSigningKey()
	body := []byte(`{"pdus":[],"edus":[],"origin":"hs2","n":-15}`)
	uri := "/_matrix/federation/v1/send/t1?x=a%20b&y=%E2%9C%93"

	// A good request: the handler sees the origin and the whole body.
	status, m := do(t, signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k2, body))
	if status != 200 || m["origin"] != "hs2" || m["body"] != string(body) || m["txn"] != "t1" {
		t.Fatalf("good request: %d %v", status, m)
	}
	if n := e.f.count("hs2"); n != 1 {
		t.Fatalf("%d key fetches", n)
	}
	// Again: the key comes from memory. A GET has no content; a sender
	// that leaves out destination (before spec v1.3) is accepted.
	if status, m := do(t, signed(t, "GET", e.signedURL, "/_matrix/federation/v1/query/profile?user_id=@a:hs1", "hs2", "", k2, nil)); status != 200 || m["origin"] != "hs2" {
		t.Fatalf("GET without destination: %d %v", status, m)
	}

	wantErr := func(name string, req *http.Request, status int, errcode string) {
		t.Helper()
		got, m := do(t, req)
		if got != status || m["errcode"] != errcode {
			t.Errorf("%s: %d %v, want %d %s", name, got, m, status, errcode)
		}
	}
	plain, _ := http.NewRequest("PUT", e.signedURL+uri, bytes.NewReader(body))
	wantErr("no Authorization", plain, 401, "M_UNAUTHORIZED")
	bearer, _ := http.NewRequest("PUT", e.signedURL+uri, bytes.NewReader(body))
	bearer.Header.Set("Authorization", "Bearer abc")
	wantErr("another scheme", bearer, 401, "M_UNAUTHORIZED")
	for _, h := range []string{`X-Matrix`, `X-Matrix origin="hs2"`, `X-Matrix origin="hs2",key="ed25519:x",sig="abc`, `X-Matrix origin=hs2 x,key=a,sig=b`, `X-Matrix origin="hs 2",key="ed25519:a",sig="b"`} {
		req := signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k2, body)
		req.Header.Set("Authorization", h)
		wantErr("malformed "+h, req, 401, "M_UNAUTHORIZED")
	}
	// (The signature would not verify either: it covers the destination.)
	if status, m := do(t, signed(t, "PUT", e.signedURL, uri, "hs2", "hs3", k2, body)); status != 401 || m["errcode"] != "M_UNAUTHORIZED" || !strings.Contains(m["error"].(string), "Destination mismatch") {
		t.Errorf("wrong destination: %d %v", status, m)
	}
	tampered := signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k2, body)
	tampered.Body = io.NopCloser(strings.NewReader(`{"pdus":[1]}`))
	tampered.ContentLength = -1
	wantErr("body not signed", tampered, 401, "M_UNAUTHORIZED")
	other2 := signed(t, "PUT", e.signedURL, "/_matrix/federation/v1/send/t2", "hs2", "hs1", k2, body)
	other2.URL.Path = "/_matrix/federation/v1/send/t3"
	wantErr("other path", other2, 401, "M_UNAUTHORIZED")
	wantErr("bad signature with the known key ID", signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", &event.SigningKey{ID: k2.ID, Private: other.Private}, body), 401, "M_UNAUTHORIZED")
	wantErr("origin that is not the signer", signed(t, "PUT", e.signedURL, uri, "hs1", "hs1", k2, body), 401, "M_UNAUTHORIZED")
	notJSON := signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k2, nil)
	notJSON.Body, notJSON.ContentLength = io.NopCloser(strings.NewReader("{")), 1
	wantErr("body not JSON", notJSON, 400, "M_NOT_JSON")

	// Unknown key IDs: refused, and a flood of them fetches hs2's keys
	// at most once a minute (it was fetched just now: not again).
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := &event.SigningKey{ID: fmt.Sprintf("ed25519:flood%d", i), Private: other.Private}
			wantErr("unknown key", signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k, body), 401, "M_UNAUTHORIZED")
		}()
	}
	wg.Wait()
	if n := e.f.count("hs2"); n != 1 {
		t.Fatalf("%d key fetches after a flood of unknown keys, want 1", n)
	}
	// A server nobody can reach: 401 after one fetch attempt.
	wantErr("unreachable origin", signed(t, "PUT", e.signedURL, uri, "hs9", "hs1", other, body), 401, "M_UNAUTHORIZED")
	wantErr("unreachable origin again", signed(t, "PUT", e.signedURL, uri, "hs9", "hs1", other, body), 401, "M_UNAUTHORIZED")
	if n := e.f.count("hs9"); n != 1 {
		t.Fatalf("%d fetches of an unreachable server", n)
	}

	// Several headers: a signature by an unknown key is skipped, but one
	// by a known key that does not verify fails the request.
	two := signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k2, body)
	two.Header.Add("Authorization", xMatrix(t, "PUT", uri, "hs2", "hs1", &event.SigningKey{ID: "ed25519:unknown", Private: other.Private}, body))
	if status, m := do(t, two); status != 200 {
		t.Fatalf("good and unknown-key headers: %d %v", status, m)
	}
	bad := signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", &event.SigningKey{ID: "ed25519:unknown", Private: other.Private}, body)
	bad.Header.Add("Authorization", xMatrix(t, "PUT", "/elsewhere", "hs2", "hs1", k2, body))
	wantErr("unknown-key and bad-signature headers", bad, 401, "M_UNAUTHORIZED")
	mixed := signed(t, "PUT", e.signedURL, uri, "hs2", "hs1", k2, body)
	mixed.Header.Add("Authorization", xMatrix(t, "PUT", uri, "hs3", "hs1", other, body))
	wantErr("headers of two origins", mixed, 401, "M_UNAUTHORIZED")

	// The closed circle: 403 before any key is fetched.
	before := e.f.count("hs2")
	wantErr("origin not allowed", signed(t, "PUT", e.deniedURL, uri, "hs2", "hs1", k2, body), 403, "M_FORBIDDEN")
	wantErr("origin not allowed, no key", signed(t, "PUT", e.deniedURL, uri, "hs4", "hs1", other, body), 403, "M_FORBIDDEN")
	if e.f.count("hs2") != before || e.f.count("hs4") != 0 {
		t.Fatal("a server outside the allow list was contacted")
	}

	// Unauthenticated by the spec: version and the key endpoints.
	for _, p := range []string{"/_matrix/federation/v1/version", "/_matrix/key/v2/server", "/_matrix/key/v2/query/hs1"} {
		if status, m := do(t, must(http.NewRequest("GET", e.signedURL+p, nil))); status != 200 {
			t.Errorf("%s: %d %v", p, status, m)
		}
	}
	// An unknown federation path is 404 M_UNRECOGNIZED, signed or not.
	wantErr("unknown path", must(http.NewRequest("GET", e.signedURL+"/_matrix/federation/v1/nope", nil)), 404, "M_UNRECOGNIZED")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The notary, on hs1's federation listener: hs2's keys as hs2 signed them,
// countersigned by hs1.
func TestNotary(t *testing.T) {
	e := startFed(t)
	c := fedClient(t, e.ca.Pool(), "hs1")
	k1, k2 := e.s1.HS.SigningKey, e.s2.HS.SigningKey
	check := func(resp map[string]any, want ...string) {
		t.Helper()
		keys, _ := resp["server_keys"].([]any)
		if len(keys) != len(want) {
			t.Fatalf("server_keys %v, want %v", resp, want)
		}
		for i, k := range keys {
			b, _ := json.Marshal(k)
			server := k.(map[string]any)["server_name"]
			if server != want[i] {
				t.Fatalf("server_keys[%d] is %v, want %s", i, server, want[i])
			}
			own := map[string]*event.SigningKey{"hs1": k1, "hs2": k2}[want[i]]
			if err := event.VerifyJSON(b, want[i], own.ID, own.PublicKey()); err != nil {
				t.Fatalf("%s's own signature: %v", want[i], err)
			}
			if err := event.VerifyJSON(b, "hs1", k1.ID, k1.PublicKey()); err != nil {
				t.Fatalf("notary signature on %s's keys: %v", want[i], err)
			}
		}
	}
	get := func(url string) (int, map[string]any) {
		t.Helper()
		status, b := fetch(t, c, "GET", url)
		var m map[string]any
		json.Unmarshal(b, &m)
		return status, m
	}
	status, m := get(e.s1.FederationURL + "/_matrix/key/v2/query/hs2")
	if status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	check(m, "hs2")
	// Served from the store now; a later minimum_valid_until_ts than the
	// response's asks for a refetch, limited to one a minute: the stored
	// one is served.
	far := time.Now().Add(30 * 24 * time.Hour).UnixMilli()
	if _, m := get(fmt.Sprintf("%s/_matrix/key/v2/query/hs2?minimum_valid_until_ts=%d", e.s1.FederationURL, far)); true {
		check(m, "hs2")
	}
	if n := e.f.count("hs2"); n != 1 {
		t.Fatalf("%d fetches of hs2", n)
	}
	if _, m := get(e.s1.FederationURL + "/_matrix/key/v2/query/hs1"); true {
		check(m, "hs1")
	}
	if _, m := get(e.s1.FederationURL + "/_matrix/key/v2/query/hs9"); true {
		check(m) // unreachable, nothing cached: empty
	}
	if status, m := get(e.s1.FederationURL + "/_matrix/key/v2/query/hs2?minimum_valid_until_ts=x"); status != 400 || m["errcode"] != "M_INVALID_PARAM" {
		t.Fatalf("bad minimum_valid_until_ts: %d %v", status, m)
	}

	post := func(url, body string) (int, map[string]any) {
		t.Helper()
		res, err := c.Post(url+"/_matrix/key/v2/query", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		json.NewDecoder(res.Body).Decode(&m)
		return res.StatusCode, m
	}
	status, m = post(e.s1.FederationURL, `{"server_keys":{"hs2":{"`+k2.ID+`":{"minimum_valid_until_ts":1}},"hs9":{},"not a name":{}}}`)
	if status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	check(m, "hs2")
	if status, m := post(e.s1.FederationURL, `{"server_keys":{}}`); status != 200 {
		t.Fatalf("%d %v", status, m)
	} else {
		check(m)
	}
	if status, m := post(e.s1.FederationURL, `{}`); status != 400 || m["errcode"] != "M_BAD_JSON" {
		t.Fatalf("no server_keys: %d %v", status, m)
	}

	// The closed circle: a server outside it is refused and not contacted.
	dc := &http.Client{Timeout: 10 * time.Second}
	res, err := dc.Get(e.deniedURL + "/_matrix/key/v2/query/hs4")
	if err != nil {
		t.Fatal(err)
	}
	var em map[string]any
	json.NewDecoder(res.Body).Decode(&em)
	res.Body.Close()
	if res.StatusCode != 403 || em["errcode"] != "M_FORBIDDEN" {
		t.Fatalf("notary for a server outside the allow list: %d %v", res.StatusCode, em)
	}
	status, m = post(e.deniedURL, `{"server_keys":{"hs4":{},"hs2":{}}}`)
	if status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	check(m)
	if e.f.count("hs4") != 0 {
		t.Fatal("a server outside the allow list was contacted")
	}
}

// The homeserver's own wiring: the keyring fetches through hs.FedClient and
// keeps to federation_allow; the notary on the real listener likewise.
func TestKeyringThroughFedClientInClosedCircle(t *testing.T) {
	servers := hstest.StartFederation(t, 2)
	a, b := servers[0], servers[1]
	kb := b.HS.SigningKey
	pub, err := a.HS.Keyring.VerifyKey(t.Context(), b.ServerName, kb.ID, time.Now().UnixMilli())
	if err != nil || !pub.Equal(kb.PublicKey()) {
		t.Fatalf("%s's key through the federation client: %v", b.ServerName, err)
	}
	if _, err := a.HS.Keyring.VerifyKey(t.Context(), "localhost:1", "ed25519:x", 0); err != keyring.ErrNotAllowed {
		t.Fatalf("outsider: %v", err)
	}
	c := fedClient(t, a.CA.Pool(), "localhost")
	status, body := fetch(t, c, "GET", a.FederationURL+"/_matrix/key/v2/query/"+b.ServerName)
	var m struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	json.Unmarshal(body, &m)
	if status != 200 || len(m.ServerKeys) != 1 || event.VerifyJSON(m.ServerKeys[0], a.ServerName, a.HS.SigningKey.ID, a.HS.SigningKey.PublicKey()) != nil ||
		event.VerifyJSON(m.ServerKeys[0], b.ServerName, kb.ID, kb.PublicKey()) != nil {
		t.Fatalf("notary: %d %s", status, body)
	}
	if status, body := fetch(t, c, "GET", a.FederationURL+"/_matrix/key/v2/query/localhost:1"); status != 403 || !strings.Contains(string(body), "M_FORBIDDEN") {
		t.Fatalf("notary for an outsider: %d %s", status, body)
	}
}
