package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/event"
)

// E2EEParams shapes the e2ee scenario.
type E2EEParams struct {
	Devices     int // D: devices of the target user
	OneTimeKeys int // per device
	Claimers    int // concurrent claim requests
	ToDevice    int // to-device messages fanned out to all D devices; default 20
}

// E2EEResult is what the e2ee scenario measured. With a Peer (federated),
// the target user and its devices are on the Peer and the claimer on Server:
// device-list updates, claims and to-device messages all cross federation;
// the Phase figures are Server's, PeerPhases the Peer's.
type E2EEResult struct {
	Params    E2EEParams `json:"params"`
	Federated bool       `json:"federated"`
	// All D devices upload device keys and their one-time keys at once.
	Upload      Summary      `json:"keys_upload_latency"`
	UploadPhase PhaseFigures `json:"keys_upload_phase"`
	// The claimer shares a room with the target user and long-polls /sync;
	// on each device_lists.changed naming the target it runs /keys/query.
	// Per device: from the start of its upload to its keys in that answer
	// (over federation: m.device_list_update to the claimer's server).
	DeviceListUpdate Summary `json:"device_list_update_latency"`
	// Claimers claim one key of every device until none is left.
	Claim           Summary      `json:"keys_claim_latency"`
	ClaimedKeys     int          `json:"claimed_keys"`
	DuplicateClaims int          `json:"duplicate_claims"`
	ClaimPhase      PhaseFigures `json:"keys_claim_phase"`
	// A message sent to all of the user's devices ("*"), from the start of
	// the send to its arrival in the /sync of the last device.
	ToDeviceFanOut Summary      `json:"to_device_fan_out_latency"`
	ToDevicePhase  PhaseFigures `json:"to_device_phase"`
	// The Peer's figures for the same phases (federated only).
	PeerPhases *E2EEPeerPhases `json:"peer_phases,omitempty"`
}

// E2EEPeerPhases are the Peer's CPU and memory in each phase.
type E2EEPeerPhases struct {
	Upload   PhaseFigures `json:"keys_upload_phase"`
	Claim    PhaseFigures `json:"keys_claim_phase"`
	ToDevice PhaseFigures `json:"to_device_phase"`
}

// meters measures Server and, when there is one, Peer.
type meters struct{ srv, peer *Meter }

func (c *Config) startMeters() meters {
	m := meters{srv: StartMeter(c.PID)}
	if c.Peer != nil {
		m.peer = StartMeter(c.PeerPID)
	}
	return m
}

func (m meters) stop(peer *PhaseFigures) PhaseFigures {
	if m.peer != nil {
		*peer = m.peer.Stop()
	}
	return m.srv.Stop()
}

type device struct {
	*User
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func (d *device) sign(obj map[string]any) error {
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	canon, err := event.CanonicalJSON(raw, false)
	if err != nil {
		return err
	}
	obj["signatures"] = map[string]any{d.UserID: map[string]any{"ed25519:" + d.DeviceID: base64.RawStdEncoding.EncodeToString(ed25519.Sign(d.priv, canon))}}
	return nil
}

func randKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawStdEncoding.EncodeToString(b)
}

// E2EE runs key-upload and key-claim storms against one user with many
// devices, measures how fast each device's keys reach a user sharing a room,
// and fans to-device messages out to all of them. With a Peer the user is
// there and everyone else on Server.
func E2EE(ctx context.Context, c *Config, p E2EEParams) (*E2EEResult, error) {
	if p.Devices < 1 || p.OneTimeKeys < 1 || p.Claimers < 1 {
		return nil, fmt.Errorf("e2ee: devices, otks and claimers must be positive")
	}
	if p.ToDevice <= 0 {
		p.ToDevice = 20
	}
	res := &E2EEResult{Params: p, Federated: c.Peer != nil}
	var peer E2EEPeerPhases
	if c.Peer != nil {
		res.PeerPhases = &peer
	}
	home := c.Server
	if c.Peer != nil {
		home = c.Peer
	}
	name := c.Prefix + "-e2ee"
	password := "load-test-" + name
	first, err := home.Register(ctx, name, password)
	if err != nil {
		return nil, err
	}
	devs := make([]*device, p.Devices)
	devs[0] = &device{User: first}
	err = parallel(ctx, p.Devices-1, c.Parallel, func(ctx context.Context, i int) error {
		u, err := home.Login(ctx, name, password)
		devs[i+1] = &device{User: u}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("e2ee: logging in devices: %w", err)
	}
	claimer, err := c.Server.Register(ctx, c.Prefix+"-claimer", "")
	if err != nil {
		return nil, err
	}
	// The claimer shares a room with the target user, so that its server
	// tracks the user's device list (over federation: is sent its
	// m.device_list_update EDUs).
	roomID, err := claimer.CreateRoom(ctx, "private_chat", map[string]any{"invite": []string{first.UserID}})
	if err != nil {
		return nil, fmt.Errorf("e2ee: room: %w", err)
	}
	if err := first.JoinVia(ctx, roomID, claimer.UserID); err != nil {
		return nil, fmt.Errorf("e2ee: joining the claimer's room: %w", err)
	}
	byDevice := map[string]int{}
	bodies := make([]map[string]any, p.Devices)
	for i, d := range devs {
		byDevice[d.DeviceID] = i
		d.pub, d.priv, _ = ed25519.GenerateKey(rand.Reader)
		dk := map[string]any{
			"user_id": d.UserID, "device_id": d.DeviceID,
			"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
			"keys": map[string]any{
				"ed25519:" + d.DeviceID:    base64.RawStdEncoding.EncodeToString(d.pub),
				"curve25519:" + d.DeviceID: randKey(),
			},
		}
		if err := d.sign(dk); err != nil {
			return nil, err
		}
		otks := map[string]any{}
		for k := 0; k < p.OneTimeKeys; k++ {
			key := map[string]any{"key": randKey()}
			if err := d.sign(key); err != nil {
				return nil, err
			}
			otks[fmt.Sprintf("signed_curve25519:%06d", k)] = key
		}
		bodies[i] = map[string]any{"device_keys": dk, "one_time_keys": otks}
	}

	// The claimer's client watches the target's device list the way a
	// client does: device_lists.changed in /sync, then /keys/query.
	obsTokens, err := c.initialSync(ctx, []*User{claimer}, "")
	if err != nil {
		return nil, err
	}
	uploadStart := make([]atomic.Int64, p.Devices)
	var dl Latencies
	allSeen := make(chan error, 1)
	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	go func() {
		allSeen <- watchDeviceKeys(obsCtx, claimer, obsTokens[0], first.UserID, devs, byDevice, uploadStart, &dl)
	}()

	// Upload storm.
	var up Latencies
	m := c.startMeters()
	err = parallel(ctx, p.Devices, p.Devices, func(ctx context.Context, i int) error {
		t := time.Now()
		uploadStart[i].Store(t.UnixNano())
		var a struct {
			Counts map[string]int `json:"one_time_key_counts"`
		}
		if err := devs[i].Do(ctx, "POST", "/_matrix/client/v3/keys/upload", bodies[i], &a); err != nil {
			return err
		}
		up.Add(time.Since(t))
		if a.Counts["signed_curve25519"] != p.OneTimeKeys {
			return fmt.Errorf("e2ee: upload counted %d one-time keys, want %d", a.Counts["signed_curve25519"], p.OneTimeKeys)
		}
		return nil
	})
	if err == nil {
		select {
		case err = <-allSeen:
		case <-time.After(60 * time.Second):
			err = fmt.Errorf("e2ee: %d of %d devices' keys seen by the claimer within 60 s of their upload", dl.Summary().N, p.Devices)
		}
	}
	stopObs()
	res.UploadPhase = m.stop(&peer.Upload)
	if err != nil {
		return nil, fmt.Errorf("e2ee: upload: %w", err)
	}
	res.Upload = up.Summary()
	res.DeviceListUpdate = dl.Summary()

	// Claim storm: p.OneTimeKeys requests, each claiming one key of every
	// device, Claimers at a time. No key may be handed out twice.
	want := map[string]any{}
	for _, d := range devs {
		want[d.DeviceID] = "signed_curve25519"
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var cl Latencies
	m = c.startMeters()
	err = parallel(ctx, p.OneTimeKeys, p.Claimers, func(ctx context.Context, _ int) error {
		t := time.Now()
		var a struct {
			Keys     map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
			Failures map[string]json.RawMessage                       `json:"failures"`
		}
		if err := claimer.Do(ctx, "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{first.UserID: want}}, &a); err != nil {
			return err
		}
		cl.Add(time.Since(t))
		if len(a.Failures) > 0 {
			return fmt.Errorf("e2ee: claim failures: %v", a.Failures)
		}
		mu.Lock()
		defer mu.Unlock()
		for dev, keys := range a.Keys[first.UserID] {
			for id := range keys {
				k := dev + "/" + id
				if seen[k] {
					res.DuplicateClaims++
				}
				seen[k] = true
				res.ClaimedKeys++
			}
		}
		return nil
	})
	res.ClaimPhase = m.stop(&peer.Claim)
	if err != nil {
		return nil, fmt.Errorf("e2ee: claim: %w", err)
	}
	res.Claim = cl.Summary()

	// To-device fan-out: every device long-polls; the claimer sends to "*".
	tokens, err := c.initialSync(ctx, userList(devs), "")
	if err != nil {
		return nil, err
	}
	remaining := make([]atomic.Int32, p.ToDevice)
	start := make([]atomic.Int64, p.ToDevice)
	var fan Latencies
	got := make(chan int, p.ToDevice)
	for i := range remaining {
		remaining[i].Store(int32(p.Devices))
	}
	pollCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func(u *User, since string) {
			defer wg.Done()
			for pollCtx.Err() == nil {
				r, err := u.Sync(pollCtx, since, "", 30*time.Second)
				if err != nil {
					return
				}
				since = r.NextBatch
				for _, ev := range r.ToDevice.Events {
					seq := ev.Content.Seq
					if ev.Type != "org.conclave.load" || seq < 0 || seq >= int64(p.ToDevice) {
						continue
					}
					if remaining[seq].Add(-1) == 0 {
						fan.Add(time.Duration(time.Now().UnixNano() - start[seq].Load()))
						got <- int(seq)
					}
				}
			}
		}(d.User, tokens[i])
	}
	time.Sleep(300 * time.Millisecond)
	m = c.startMeters()
	for seq := 0; seq < p.ToDevice; seq++ {
		start[seq].Store(time.Now().UnixNano())
		body := map[string]any{"messages": map[string]any{first.UserID: map[string]any{"*": map[string]any{"org.conclave.load.seq": seq}}}}
		if err := claimer.Do(ctx, "PUT", "/_matrix/client/v3/sendToDevice/org.conclave.load/"+url.PathEscape(fmt.Sprintf("%s-%d", c.Prefix, seq)), body, nil); err != nil {
			return nil, err
		}
		select {
		case <-got:
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("e2ee: to-device message %d not delivered to all %d devices within 30 s", seq, p.Devices)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res.ToDevicePhase = m.stop(&peer.ToDevice)
	res.ToDeviceFanOut = fan.Summary()
	stop()
	wg.Wait()
	c.logf("e2ee (federated %v): upload p50 %.1f ms, device list to the claimer p50 %.1f ms, claim p50 %.1f ms (%d keys, %d duplicates), to-device fan-out p50 %.1f ms",
		res.Federated, res.Upload.P50, res.DeviceListUpdate.P50, res.Claim.P50, res.ClaimedKeys, res.DuplicateClaims, res.ToDeviceFanOut.P50)
	return res, nil
}

// watchDeviceKeys long-polls the observer's /sync from since and, whenever
// device_lists.changed names target, asks /keys/query for target's devices;
// each device whose uploaded ed25519 key appears counts once, its latency
// from uploadStart. It returns nil when every device was seen.
func watchDeviceKeys(ctx context.Context, obs *User, since, target string, devs []*device, byDevice map[string]int, uploadStart []atomic.Int64, lat *Latencies) error {
	seen := make([]bool, len(devs))
	left := len(devs)
	for {
		r, err := obs.Sync(ctx, since, "", 30*time.Second)
		if err != nil {
			return fmt.Errorf("e2ee: claimer's sync: %w", err)
		}
		since = r.NextBatch
		if !slices.Contains(r.DeviceLists.Changed, target) {
			continue
		}
		var a struct {
			DeviceKeys map[string]map[string]struct {
				Keys map[string]string `json:"keys"`
			} `json:"device_keys"`
			Failures map[string]json.RawMessage `json:"failures"`
		}
		if err := obs.Do(ctx, "POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": map[string]any{target: []string{}}}, &a); err != nil {
			return fmt.Errorf("e2ee: claimer's keys/query: %w", err)
		}
		if len(a.Failures) > 0 {
			return fmt.Errorf("e2ee: keys/query failures: %v", a.Failures)
		}
		now := time.Now().UnixNano()
		for dev, k := range a.DeviceKeys[target] {
			i, ok := byDevice[dev]
			if !ok || seen[i] || k.Keys["ed25519:"+dev] != base64.RawStdEncoding.EncodeToString(devs[i].pub) {
				continue
			}
			seen[i] = true
			left--
			lat.Add(time.Duration(now - uploadStart[i].Load()))
		}
		if left == 0 {
			return nil
		}
	}
}

func userList(devs []*device) []*User {
	out := make([]*User, len(devs))
	for i, d := range devs {
		out[i] = d.User
	}
	return out
}
