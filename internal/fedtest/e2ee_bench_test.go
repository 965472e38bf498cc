package fedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// BenchmarkKeysQueryRemote measures a client's /keys/query for 500 users
// on 4 other servers (125 each, one device with keys each, no room shared:
// every user is asked of their server, the servers in parallel).
//
//	go test -tags goolm -run XXX -bench KeysQueryRemote -benchtime 10x ./internal/fedtest/
func BenchmarkKeysQueryRemote(b *testing.B) {
	hs := hstest.StartFederation(b, 5)
	a := hs[0]
	alice := a.Register(b, "alice")
	ctx := context.Background()
	want := map[string][]string{}
	for i, s := range hs[1:] {
		for j := 0; j < 125; j++ {
			u := s.CreateUser(b, fmt.Sprintf("u%d_%d", i, j))
			j, _ := json.Marshal(map[string]any{"user_id": u.UserID, "device_id": u.DeviceID, "algorithms": []string{"m.megolm.v1.aes-sha2"},
				"keys": map[string]string{"ed25519:" + u.DeviceID: "e" + u.UserID, "curve25519:" + u.DeviceID: "c" + u.UserID}})
			if _, _, err := s.HS.Store.UploadKeys(ctx, &store.KeyUpload{UserID: u.UserID, DeviceID: u.DeviceID,
				DeviceKeys: &store.DeviceKeys{UserID: u.UserID, DeviceID: u.DeviceID, JSON: j, Ed25519: "e" + u.UserID, Curve25519: "c" + u.UserID}}); err != nil {
				b.Fatal(err)
			}
			want[u.UserID] = []string{}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := a.MustOK(b, "POST", "/_matrix/client/v3/keys/query", alice.Token, map[string]any{"device_keys": want})
		var res struct {
			DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
			Failures   map[string]any                        `json:"failures"`
		}
		json.Unmarshal(r.Body, &res)
		if len(res.DeviceKeys) != 500 || len(res.Failures) != 0 {
			b.Fatalf("%d users, failures %v", len(res.DeviceKeys), res.Failures)
		}
	}
}
