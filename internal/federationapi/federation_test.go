package federationapi_test

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/event"
	"conclave/internal/homeserver"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/tlsutil/tlstest"
)

// withCA serves federation on a random loopback port with a certificate
// issued from ca, as the Complement image does.
func withCA(ca *tlstest.CA) hstest.Option {
	return func(c *config.Config) {
		c.FederationListen = "127.0.0.1:0"
		c.TLSCACert, c.TLSCAKey = ca.CertFile, ca.KeyFile
	}
}

// fedClient trusts only roots and checks the certificate for serverName,
// whatever address it dials. It speaks HTTP/2 when the server offers it;
// its connections close when the test ends, before the server stops (an
// open HTTP/2 connection costs a graceful shutdown one second of GOAWAY).
func fedClient(t *testing.T, roots *x509.CertPool, serverName string) *http.Client {
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

func fetch(t *testing.T, c *http.Client, method, url string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

type keyResponse struct {
	ServerName    string                       `json:"server_name"`
	ValidUntilTS  int64                        `json:"valid_until_ts"`
	VerifyKeys    map[string]map[string]string `json:"verify_keys"`
	OldVerifyKeys map[string]any               `json:"old_verify_keys"`
	Signatures    map[string]map[string]string `json:"signatures"`
}

// checkServerKeys fetches /_matrix/key/v2/server and checks it the way a
// remote server would: shape, then the self-signature with the published key.
func checkServerKeys(t *testing.T, c *http.Client, base, serverName string) (keyID string, pub ed25519.PublicKey) {
	t.Helper()
	before := time.Now()
	status, body := fetch(t, c, "GET", base+"/_matrix/key/v2/server")
	if status != 200 {
		t.Fatalf("key/v2/server: %d %s", status, body)
	}
	var kr keyResponse
	if err := json.Unmarshal(body, &kr); err != nil {
		t.Fatal(err)
	}
	if kr.ServerName != serverName {
		t.Fatalf("server_name %q", kr.ServerName)
	}
	week := 7 * 24 * time.Hour
	if lo, hi := before.Add(week-time.Hour).UnixMilli(), time.Now().Add(week).UnixMilli(); kr.ValidUntilTS < lo || kr.ValidUntilTS > hi || kr.ValidUntilTS%3600_000 != 0 {
		t.Fatalf("valid_until_ts %d not in [%d, %d] on the hour", kr.ValidUntilTS, lo, hi)
	}
	if kr.OldVerifyKeys == nil || len(kr.OldVerifyKeys) != 0 {
		t.Fatalf("old_verify_keys %v", kr.OldVerifyKeys)
	}
	if len(kr.VerifyKeys) != 1 {
		t.Fatalf("verify_keys %v", kr.VerifyKeys)
	}
	for id, k := range kr.VerifyKeys {
		keyID = id
		if strings.HasSuffix(k["key"], "=") {
			t.Fatalf("key %q is padded", k["key"])
		}
		raw, err := base64.RawStdEncoding.DecodeString(k["key"])
		if err != nil || len(raw) != ed25519.PublicKeySize {
			t.Fatalf("key %q: %v", k["key"], err)
		}
		pub = raw
	}
	if !strings.HasPrefix(keyID, "ed25519:") {
		t.Fatalf("key id %q", keyID)
	}
	if len(kr.Signatures) != 1 || len(kr.Signatures[serverName]) != 1 {
		t.Fatalf("signatures %v", kr.Signatures)
	}
	if err := event.VerifyJSON(body, serverName, keyID, pub); err != nil {
		t.Fatalf("self-signature: %v", err)
	}
	// The signature covers the content: a changed valid_until_ts fails.
	var m map[string]any
	json.Unmarshal(body, &m)
	m["valid_until_ts"] = kr.ValidUntilTS + 1
	tampered, _ := json.Marshal(m)
	if err := event.VerifyJSON(tampered, serverName, keyID, pub); err == nil {
		t.Fatal("tampered key response verified")
	}
	return keyID, pub
}

func TestServerKeysOverTLSWithComplementStyleCA(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.RSAPKCS1)
	s := hstest.Start(t, withCA(ca))
	if s.FederationURL == "" {
		t.Fatal("no federation listener")
	}
	c := fedClient(t, ca.Pool(), "localhost")
	keyID, pub := checkServerKeys(t, c, s.FederationURL, "localhost")
	if keyID != s.HS.SigningKey.ID || !pub.Equal(s.HS.SigningKey.PublicKey()) {
		t.Fatal("published key is not the server's signing key")
	}
	// The server's own client roots are exactly the CA (Complement images
	// have no system roots).
	if !s.HS.TLS.Roots.Equal(ca.Pool()) {
		t.Fatal("outgoing roots are not the CA")
	}
	checkServerKeys(t, fedClient(t, s.HS.TLS.Roots, "localhost"), s.FederationURL, "localhost")

	res, err := c.Get(s.FederationURL + "/_matrix/federation/v1/version")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Proto != "HTTP/2.0" {
		t.Fatalf("federation listener spoke %s, want HTTP/2 by ALPN", res.Proto)
	}
	status, body := fetch(t, c, "GET", s.FederationURL+"/_matrix/federation/v1/version")
	var v struct {
		Server struct{ Name, Version string }
	}
	if json.Unmarshal(body, &v); status != 200 || v.Server.Name != "Conclave" || v.Server.Version == "" {
		t.Fatalf("version: %d %s", status, body)
	}
	status, body = fetch(t, c, "GET", s.FederationURL+"/_matrix/federation/v1/unknown")
	if status != 404 || !strings.Contains(string(body), `"M_UNRECOGNIZED"`) {
		t.Fatalf("unknown federation path: %d %s", status, body)
	}

	// Another CA's roots do not trust this server; nor does the right CA
	// for another name.
	other := tlstest.NewCA(t, tlstest.ECPKCS8)
	if _, err := fedClient(t, other.Pool(), "localhost").Get(s.FederationURL + "/_matrix/key/v2/server"); err == nil {
		t.Fatal("untrusted CA accepted")
	}
	if _, err := fedClient(t, ca.Pool(), "hs2").Get(s.FederationURL + "/_matrix/key/v2/server"); err == nil {
		t.Fatal("certificate accepted for another name")
	}

	// The federation API is not on the client listener and vice versa; the
	// client listener stays plain HTTP.
	if r := s.Do(t, "GET", "/_matrix/key/v2/server", "", nil); r.Status != 404 || r.Errcode() != "M_UNRECOGNIZED" {
		t.Fatalf("key endpoint on the client listener: %d %s", r.Status, r.Body)
	}
	if !strings.HasPrefix(s.URL, "http://") {
		t.Fatalf("client URL %s", s.URL)
	}
	s.MustOK(t, "GET", "/_matrix/client/versions", "", nil)
	if status, _ := fetch(t, c, "GET", s.FederationURL+"/_matrix/client/versions"); status != 404 {
		t.Fatalf("client versions on the federation listener: %d", status)
	}
}

func TestIPLiteralServerName(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECSEC1)
	s := hstest.Start(t, withCA(ca), func(c *config.Config) { c.ServerName = "127.0.0.1:8448" })
	// No ServerName override: the client checks the IP SAN of the address.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	checkServerKeys(t, c, s.FederationURL, "127.0.0.1:8448")
}

// A restart keeps the signing key but issues a new certificate from the
// (possibly new) CA: Complement commits a container and starts it again.
func TestRestartKeepsSigningKeyAndReissuesCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.RSAPKCS1)
	s := hstest.Start(t, withCA(ca), func(c *config.Config) { c.ServerName = "hs1" })
	c1 := fedClient(t, ca.Pool(), "hs1")
	id1, pub1 := checkServerKeys(t, c1, s.FederationURL, "hs1")
	c1.CloseIdleConnections()
	leaf1 := s.HS.TLS.Leaf
	cfg := s.Config
	s.Stop()

	ca2 := tlstest.NewCA(t, tlstest.RSAPKCS1)
	cfg.TLSCACert, cfg.TLSCAKey = ca2.CertFile, ca2.KeyFile
	s2 := hstest.StartConfig(t, cfg)
	id2, pub2 := checkServerKeys(t, fedClient(t, ca2.Pool(), "hs1"), s2.FederationURL, "hs1")
	if id1 != id2 || !pub1.Equal(pub2) {
		t.Fatalf("signing key changed across restart: %s -> %s", id1, id2)
	}
	if s2.HS.TLS.Leaf.Equal(leaf1) {
		t.Fatal("certificate not reissued at start")
	}
}

func newHS(t *testing.T, mod func(*config.Config)) error {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	mod(&cfg)
	hs, err := homeserver.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		hs.Store.Close()
	}
	return err
}

func TestFederationListenNeedsTLS(t *testing.T) {
	err := newHS(t, func(c *config.Config) { c.FederationListen = "127.0.0.1:0" })
	if err == nil || !strings.Contains(err.Error(), "federation_listen") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("federation_listen without TLS: %v", err)
	}
	ca := tlstest.NewCA(t, tlstest.RSAPKCS1)
	other := tlstest.NewCA(t, tlstest.RSAPKCS1)
	err = newHS(t, func(c *config.Config) {
		c.FederationListen = "127.0.0.1:0"
		c.TLSCACert, c.TLSCAKey = ca.CertFile, other.KeyFile
	})
	if err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched CA key: %v", err)
	}
	// Without federation_listen nothing TLS is needed.
	if err := newHS(t, func(c *config.Config) {}); err != nil {
		t.Fatal(err)
	}
}

// With tls_cert/tls_key both listeners serve that certificate, the client
// listener included.
func TestCertificateFilesServeBothListeners(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	// Make a certificate for "localhost" and write it as plain files.
	issuer := hstest.Start(t, withCA(ca))
	ic := fedClient(t, ca.Pool(), "localhost")
	if status, _ := fetch(t, ic, "GET", issuer.FederationURL+"/_matrix/federation/v1/version"); status != 200 {
		t.Fatal(status)
	}
	ic.CloseIdleConnections()
	certFile, keyFile := writeLeaf(t, issuer.HS.TLS.Server.Certificates[0])
	issuer.Stop()

	s := hstest.Start(t, func(c *config.Config) {
		c.FederationListen = "127.0.0.1:0"
		c.TLSCert, c.TLSKey = certFile, keyFile
	})
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("client URL %s", s.URL)
	}
	if s.HS.TLS.Roots != nil {
		t.Fatal("roots set without a CA")
	}
	c := fedClient(t, ca.Pool(), "localhost")
	if status, body := fetch(t, c, "GET", s.URL+"/_matrix/client/versions"); status != 200 {
		t.Fatalf("client versions over TLS: %d %s", status, body)
	}
	checkServerKeys(t, c, s.FederationURL, "localhost")
}
