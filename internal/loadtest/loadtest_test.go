package loadtest

import (
	"context"
	"os"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// The scenarios run against a real in-process server with small parameters:
// every message must reach every member exactly once, and the figures must
// be filled in. The server runs in this process, so its PID is ours.
func testConfig(t *testing.T) *Config {
	t.Helper()
	s := hstest.Start(t, func(c *config.Config) {
		c.EnableRegistration = true
		c.RateLimits = false
	})
	srv, err := NewServer(s.URL, "", 64)
	if err != nil {
		t.Fatal(err)
	}
	return &Config{Server: srv, PID: os.Getpid(), Prefix: "t", Parallel: 4, Log: t.Logf}
}

func TestMessagesScenario(t *testing.T) {
	c := testConfig(t)
	for _, rate := range []float64{0, 200} {
		c.Prefix = "t" + string(rune('a'+int(rate)%26))
		res, err := Messages(context.Background(), c, MessagesParams{Users: 12, Rooms: 3, Members: 6, Senders: 3, Messages: 60, Rate: rate, Drain: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if res.Accepted != 60 || res.Failed != 0 || res.DeliveredToAll != 60 || res.Undelivered != 0 || res.DuplicateDeliveries != 0 {
			t.Fatalf("rate %v: %+v", rate, res)
		}
		if res.SendLatency.N != 60 || res.Delivery.P99 < res.Delivery.P50 || res.Delivery.Max <= 0 || res.ServerCPUPer1000Msgs <= 0 || res.Phase.ServerPeakRSSMB <= 0 {
			t.Fatalf("rate %v: figures missing: %+v", rate, res)
		}
	}
}

func TestOtherScenarios(t *testing.T) {
	c := testConfig(t)
	ctx := context.Background()
	is, err := InitialSync(ctx, c, InitialSyncParams{Ks: []int{2, 4}, History: 3, Repeats: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(is.Points) != 2 || is.Points[1].Rooms != 4 || is.Points[1].FullMs <= 0 || is.GrowthVsLinear <= 0 {
		t.Fatalf("initial-sync: %+v", is)
	}
	jl, err := JoinLargeRoom(ctx, c, JoinLargeRoomParams{Members: 30, Newcomers: 2})
	if err != nil {
		t.Fatal(err)
	}
	// Lazy loading leaves most of the 30 member events out; full state has
	// all of them.
	if jl.Full.StateEvents < 30 || jl.Lazy.StateEvents >= jl.Full.StateEvents || jl.Lazy.TotalMs <= 0 {
		t.Fatalf("join-large-room: %+v", jl)
	}
	e, err := E2EE(ctx, c, E2EEParams{Devices: 4, OneTimeKeys: 5, Claimers: 3, ToDevice: 3})
	if err != nil {
		t.Fatal(err)
	}
	if e.ClaimedKeys != 20 || e.DuplicateClaims != 0 || e.ToDeviceFanOut.N != 3 || e.Upload.N != 4 || e.DeviceListUpdate.N != 4 || e.Federated {
		t.Fatalf("e2ee: %+v", e)
	}
}

// The e2ee scenario across two federating servers: the devices on the
// second, the claimer on the first. Every device's keys reach the claimer
// through m.device_list_update, every claim is answered by the other server
// and no key is handed out twice; to-device messages cross too.
func TestE2EEFederated(t *testing.T) {
	s := hstest.StartFederation(t, 2, func(c *config.Config) {
		c.EnableRegistration = true
		c.RateLimits = false
	})
	a, err := NewServer(s[0].URL, "", 64)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewServer(s[1].URL, "", 64)
	if err != nil {
		t.Fatal(err)
	}
	c := &Config{Server: a, Peer: b, PID: os.Getpid(), PeerPID: os.Getpid(), Prefix: "f", Parallel: 4, Log: t.Logf}
	e, err := E2EE(context.Background(), c, E2EEParams{Devices: 5, OneTimeKeys: 4, Claimers: 2, ToDevice: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Federated || e.PeerPhases == nil || e.ClaimedKeys != 20 || e.DuplicateClaims != 0 || e.ToDeviceFanOut.N != 3 || e.Upload.N != 5 || e.DeviceListUpdate.N != 5 {
		t.Fatalf("e2ee: %+v", e)
	}
}

func TestNotLoopbackRefused(t *testing.T) {
	for _, u := range []string{"http://example.org:8008", "http://10.0.0.1", "ftp://127.0.0.1", "::"} {
		if _, err := NewServer(u, "", 1); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8008", "http://localhost:1", "http://[::1]:8008"} {
		if _, err := NewServer(u, "", 1); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}
