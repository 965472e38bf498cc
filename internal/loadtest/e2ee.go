package loadtest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
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

// E2EEResult is what the e2ee scenario measured.
type E2EEResult struct {
	Params E2EEParams `json:"params"`
	// All D devices upload device keys and their one-time keys at once.
	Upload      Summary      `json:"keys_upload_latency"`
	UploadPhase PhaseFigures `json:"keys_upload_phase"`
	// Claimers claim one key of every device until none is left.
	Claim           Summary      `json:"keys_claim_latency"`
	ClaimedKeys     int          `json:"claimed_keys"`
	DuplicateClaims int          `json:"duplicate_claims"`
	ClaimPhase      PhaseFigures `json:"keys_claim_phase"`
	// A message sent to all of the user's devices ("*"), from the start of
	// the send to its arrival in the /sync of the last device.
	ToDeviceFanOut Summary      `json:"to_device_fan_out_latency"`
	ToDevicePhase  PhaseFigures `json:"to_device_phase"`
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
// devices, and fans to-device messages out to all of them.
func E2EE(ctx context.Context, c *Config, p E2EEParams) (*E2EEResult, error) {
	if p.Devices < 1 || p.OneTimeKeys < 1 || p.Claimers < 1 {
		return nil, fmt.Errorf("e2ee: devices, otks and claimers must be positive")
	}
	if p.ToDevice <= 0 {
		p.ToDevice = 20
	}
	res := &E2EEResult{Params: p}
	name := c.Prefix + "-e2ee"
	password := "load-test-" + name
	first, err := c.Server.Register(ctx, name, password)
	if err != nil {
		return nil, err
	}
	devs := make([]*device, p.Devices)
	devs[0] = &device{User: first}
	err = parallel(ctx, p.Devices-1, c.Parallel, func(ctx context.Context, i int) error {
		u, err := c.Server.Login(ctx, name, password)
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
	bodies := make([]map[string]any, p.Devices)
	for i, d := range devs {
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

	// Upload storm.
	var up Latencies
	meter := StartMeter(c.PID)
	err = parallel(ctx, p.Devices, p.Devices, func(ctx context.Context, i int) error {
		t := time.Now()
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
	res.UploadPhase = meter.Stop()
	if err != nil {
		return nil, fmt.Errorf("e2ee: upload: %w", err)
	}
	res.Upload = up.Summary()

	// Claim storm: p.OneTimeKeys requests, each claiming one key of every
	// device, Claimers at a time. No key may be handed out twice.
	want := map[string]any{}
	for _, d := range devs {
		want[d.DeviceID] = "signed_curve25519"
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var cl Latencies
	meter = StartMeter(c.PID)
	err = parallel(ctx, p.OneTimeKeys, p.Claimers, func(ctx context.Context, _ int) error {
		t := time.Now()
		var a struct {
			Keys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
		}
		if err := claimer.Do(ctx, "POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{first.UserID: want}}, &a); err != nil {
			return err
		}
		cl.Add(time.Since(t))
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
	res.ClaimPhase = meter.Stop()
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
	meter = StartMeter(c.PID)
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
	res.ToDevicePhase = meter.Stop()
	res.ToDeviceFanOut = fan.Summary()
	stop()
	wg.Wait()
	c.logf("e2ee: upload p50 %.1f ms, claim p50 %.1f ms (%d keys, %d duplicates), to-device fan-out p50 %.1f ms",
		res.Upload.P50, res.Claim.P50, res.ClaimedKeys, res.DuplicateClaims, res.ToDeviceFanOut.P50)
	return res, nil
}

func userList(devs []*device) []*User {
	out := make([]*User, len(devs))
	for i, d := range devs {
		out[i] = d.User
	}
	return out
}
