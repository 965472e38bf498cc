package hstest_test

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/homeserver/hstest"
)

// Two servers on one machine find each other by their names' explicit
// ports, verify each other's certificates against the shared test CA, and
// fetch each other's keys and answer signed requests through fedclient.
func TestFederationHarnessServersTalk(t *testing.T) {
	servers := hstest.StartFederation(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, from := range servers {
		to := servers[1-i]
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(to.FederationURL, "https://"))
		if to.ServerName != "localhost:"+port {
			t.Fatalf("server name %q, federation listener %s", to.ServerName, to.FederationURL)
		}
		raw, err := from.HS.FedClient.GetServerKeys(ctx, to.ServerName)
		if err != nil {
			t.Fatalf("%s fetching %s's keys: %v", from.ServerName, to.ServerName, err)
		}
		var keys struct {
			ServerName string `json:"server_name"`
			VerifyKeys map[string]struct {
				Key string `json:"key"`
			} `json:"verify_keys"`
		}
		if err := json.Unmarshal(raw, &keys); err != nil {
			t.Fatal(err)
		}
		k := to.HS.SigningKey
		if keys.ServerName != to.ServerName || keys.VerifyKeys[k.ID].Key != k.PublicKeyBase64() {
			t.Fatalf("keys of %s: %s", to.ServerName, raw)
		}
		if err := event.VerifyJSON(raw, to.ServerName, k.ID, k.PublicKey()); err != nil {
			t.Fatalf("keys of %s not self-signed: %v", to.ServerName, err)
		}
		var version struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
		}
		if err := from.HS.FedClient.Do(ctx, "GET", to.ServerName, "/_matrix/federation/v1/version", nil, nil, &version); err != nil || version.Server.Name == "" {
			t.Fatalf("signed request to %s: %+v %v", to.ServerName, version, err)
		}
		from.HS.FedClient.CloseIdleConnections()
	}
}

// A server outside federation_allow is never contacted: the listener
// standing for it accepts nothing but the probe the test itself sends
// afterwards. The same name is contacted once the circle is open, so the
// listener does see a federation connection when one is made.
func TestFederationHarnessClosedCircle(t *testing.T) {
	servers := hstest.StartFederation(t, 1)
	outsider, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer outsider.Close()
	name := "localhost:" + strconv.Itoa(outsider.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	fc := servers[0].HS.FedClient
	if _, err := fc.GetServerKeys(ctx, name); !fedclient.IsNotAllowed(err) {
		t.Fatalf("outsider's keys: %v", err)
	}
	if err := fc.Do(ctx, "PUT", name, "/_matrix/federation/v1/send/1", nil, map[string]any{"pdus": []any{}}, nil); !fedclient.IsNotAllowed(err) {
		t.Fatalf("transaction to outsider: %v", err)
	}
	// The first connection the outsider accepts is the probe: nothing
	// connected before it.
	probe, err := net.Dial("tcp", outsider.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	first, err := outsider.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if first.RemoteAddr().String() != probe.LocalAddr().String() {
		t.Fatalf("the outsider was contacted from %s before the probe", first.RemoteAddr())
	}
	first.Close()

	// With the circle open the same request does connect (and fails at
	// TLS: the outsider speaks none).
	open := hstest.StartFederation(t, 1, hstest.OpenFederation)[0].HS.FedClient
	errc := make(chan error, 1)
	go func() { _, err := open.GetServerKeys(ctx, name); errc <- err }()
	conn, err := outsider.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if err := <-errc; err == nil || fedclient.IsNotAllowed(err) {
		t.Fatalf("open federation: %v", err)
	}
}
