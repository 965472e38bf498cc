// Package keys is the server side of end-to-end encryption: device and
// one-time key upload, query and claim, cross-signing keys and signatures,
// device list change tracking, send-to-device messaging and server-side key
// backups. The server never sees plaintext: it validates shapes and
// signatures, then stores, counts and relays keys exactly.
package keys

import (
	"conclave/internal/changes"
	"conclave/internal/event"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// ErrInvalidSignature is the errcode Synapse and the spec's examples use
// for signatures that do not verify.
const ErrInvalidSignature = "M_INVALID_SIGNATURE"

// Bounds on one request (bodies are also bounded in size by the API).
const (
	MaxKeysPerUpload    = 1000  // one-time keys in one /keys/upload
	MaxQueryUsers       = 10000 // users in one /keys/query
	MaxClaims           = 10000 // devices in one /keys/claim
	MaxSignatureTargets = 1000  // keys in one /keys/signatures/upload
	MaxToDeviceTargets  = 10000 // (user, device) entries in one /sendToDevice
	MaxToDeviceBatch    = 100   // to-device messages given to one /sync
)

// Service is the keys service.
type Service struct {
	store      Store
	serverName string

	// DeviceChange, when set, is called before a write that may change the
	// devices or keys of users (their device lists): it marks the change in
	// the change tracker, and the function it returns, called after the
	// write, records it and — with wake — wakes everyone sharing a room with
	// them. It must not block for long.
	// The context it returns carries the marks to other processes: write
	// with it.
	DeviceChange func(ctx context.Context, users ...string) (context.Context, func(wake bool))
	// NotifyToDevice, when set, wakes the recipients of to-device messages
	// after they are committed.
	NotifyToDevice func(userIDs ...string)
	// Changes, when set, has to-device messages and key count changes
	// marked before they commit.
	Changes *changes.Tracker
	// Fed reaches other servers (federation.go); its zero value: none.
	Fed Federation

	fedOnce sync.Once
	fedSt   *fedState
}

// Store is what the keys service keeps its data in.
type Store interface {
	store.Keys
	store.DeviceLists
}

// New returns the keys service.
func New(st Store, serverName string) *Service {
	return &Service{store: st, serverName: serverName}
}

// deviceChange begins a change of users' device lists (DeviceChange):
// write with the context it returns, and call the function after the
// write, with whether anything changed.
func (s *Service) deviceChange(ctx context.Context, users ...string) (context.Context, func(wake bool)) {
	if s.DeviceChange == nil || len(users) == 0 {
		return ctx, func(bool) {}
	}
	return s.DeviceChange(ctx, users...)
}

func keyCounts(users ...string) []changes.Key {
	keys := make([]changes.Key, 0, len(users))
	for _, u := range users {
		if len(keys) == 0 || keys[len(keys)-1].Subject != u {
			keys = append(keys, changes.Key{Kind: changes.KeyCounts, Subject: u})
		}
	}
	return keys
}

func (s *Service) isLocal(userID string) bool { return matrix.ServerOf(userID) == s.serverName }

// --- /keys/upload ---------------------------------------------------------

// UploadRequest is the body of POST /keys/upload.
type UploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
	// The unstable name some clients still send.
	FallbackKeysMSC2732 map[string]json.RawMessage `json:"org.matrix.msc2732.fallback_keys"`
}

type deviceKeysBody struct {
	UserID     *string                      `json:"user_id"`
	DeviceID   *string                      `json:"device_id"`
	Algorithms []string                     `json:"algorithms"`
	Keys       map[string]string            `json:"keys"`
	Signatures map[string]map[string]string `json:"signatures"`
}

// Upload stores a device's keys and returns its one-time key counts.
func (s *Service) Upload(ctx context.Context, userID, deviceID string, req *UploadRequest) (map[string]int, error) {
	up, err := s.prepareUpload(ctx, userID, deviceID, req)
	if err != nil {
		return nil, err
	}
	w := s.Changes.Begin(keyCounts(userID)...)
	// (A device change's keys include the owner's key counts.)
	wctx, devicesDone := w.Context(ctx), func(bool) {}
	if up.DeviceKeys != nil {
		wctx, devicesDone = s.deviceChange(ctx, userID)
	}
	counts, changed, err := s.store.UploadKeys(wctx, up)
	w.Done(0)
	devicesDone(changed && err == nil)
	if err := uploadError(deviceID, err); err != nil {
		return nil, err
	}
	return withDefaultCount(counts), nil
}

func uploadError(deviceID string, err error) error {
	switch {
	case errors.Is(err, store.ErrConflict):
		return matrix.InvalidParam("A one-time key with the same ID but different content has already been uploaded")
	}
	return err
}

// prepareUpload validates an upload for a device.
func (s *Service) prepareUpload(ctx context.Context, userID, deviceID string, req *UploadRequest) (*store.KeyUpload, error) {
	up := &store.KeyUpload{UserID: userID, DeviceID: deviceID}
	var signingKey string // the device's ed25519 key, to check one-time key signatures
	if req.DeviceKeys != nil {
		dk, err := s.parseDeviceKeys(userID, deviceID, req.DeviceKeys)
		if err != nil {
			return nil, err
		}
		up.DeviceKeys = dk
		signingKey = dk.Ed25519
	} else if len(req.OneTimeKeys)+len(req.FallbackKeys)+len(req.FallbackKeysMSC2732) > 0 {
		stored, err := s.store.DeviceKeys(ctx, userID, []string{deviceID})
		if err != nil {
			return nil, err
		}
		if len(stored) == 1 {
			signingKey = stored[0].Ed25519
		}
	}
	if len(req.OneTimeKeys) > MaxKeysPerUpload {
		return nil, matrix.InvalidParam("At most %d one-time keys can be uploaded at once", MaxKeysPerUpload)
	}
	otks, err := parseKeyMap(userID, deviceID, signingKey, req.OneTimeKeys, "one_time_keys")
	if err != nil {
		return nil, err
	}
	up.OneTimeKeys = otks
	fb := req.FallbackKeys
	if fb == nil {
		fb = req.FallbackKeysMSC2732
	}
	if len(fb) > 100 {
		return nil, matrix.InvalidParam("Too many fallback keys")
	}
	fbs, err := parseKeyMap(userID, deviceID, signingKey, fb, "fallback_keys")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range fbs {
		if seen[k.Algorithm] {
			return nil, matrix.InvalidParam("fallback_keys holds more than one %s key", k.Algorithm)
		}
		seen[k.Algorithm] = true
	}
	up.FallbackKeys = fbs
	return up, nil
}

// withDefaultCount always reports signed_curve25519, as Synapse does, so
// clients see "0" rather than nothing and upload keys.
func withDefaultCount(c map[string]int) map[string]int {
	if c == nil {
		c = map[string]int{}
	}
	if _, ok := c["signed_curve25519"]; !ok {
		c["signed_curve25519"] = 0
	}
	return c
}

// parseDeviceKeys checks the shape of uploaded device keys. It does not
// check their self-signature, nor that they keep the device's identity
// keys: clients are the trust anchor (they verify every device's signature
// and cross-signing before trusting it, spec §"Device verification"), and
// Synapse stores what the device sends, so a client that lost its Olm
// account can upload new keys for the same device ID (Complement's
// TestDeviceListUpdates does). Everyone sharing a room with the user is told
// through device_lists.changed and m.device_list_update.
func (s *Service) parseDeviceKeys(userID, deviceID string, raw json.RawMessage) (*store.DeviceKeys, error) {
	var dk deviceKeysBody
	if string(raw) == "null" || json.Unmarshal(raw, &dk) != nil || raw[0] != '{' {
		return nil, matrix.BadJSON("device_keys must be an object with user_id, device_id, algorithms, keys and signatures")
	}
	if dk.UserID == nil || dk.DeviceID == nil || dk.Algorithms == nil || dk.Keys == nil {
		return nil, matrix.BadJSON("device_keys must have user_id, device_id, algorithms and keys")
	}
	// M_BAD_JSON for keys of another user or device, as Synapse answers.
	if *dk.UserID != userID {
		return nil, matrix.BadJSON("device_keys.user_id must be your user ID %s", userID)
	}
	if *dk.DeviceID != deviceID {
		return nil, matrix.BadJSON("device_keys.device_id must be the device of your access token, %s", deviceID)
	}
	if len(dk.Keys) > 100 || len(dk.Algorithms) > 100 {
		return nil, matrix.InvalidParam("device_keys holds too many keys or algorithms")
	}
	j, err := withoutUnsigned(raw)
	if err != nil {
		return nil, matrix.BadJSON("device_keys: %v", err)
	}
	return &store.DeviceKeys{UserID: userID, DeviceID: deviceID, JSON: j,
		Ed25519: dk.Keys["ed25519:"+deviceID], Curve25519: dk.Keys["curve25519:"+deviceID]}, nil
}

func sigError(what string, err error) error {
	if errors.Is(err, ErrBadSignature) {
		return matrix.InvalidParam("%s: %v", what, err)
	}
	return matrix.BadJSON("%s: %v", what, err)
}

// withoutUnsigned returns the canonical form of obj without "unsigned": the
// server adds its own unsigned data when it serves keys.
func withoutUnsigned(obj json.RawMessage) (json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, err
	}
	delete(m, "unsigned")
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return event.CanonicalJSON(b, true)
}

// parseKeyMap validates {"algorithm:id": key} maps of one-time and fallback
// keys. Signed keys (objects with signatures) are verified with the
// device's ed25519 key when it is known; keys uploaded before the device
// keys cannot be checked yet and are kept as sent, as Synapse does.
func parseKeyMap(userID, deviceID, signingKey string, m map[string]json.RawMessage, field string) ([]store.OneTimeKey, error) {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]store.OneTimeKey, 0, len(ids))
	for _, id := range ids {
		alg, kid, ok := strings.Cut(id, ":")
		if !ok || alg == "" || kid == "" || len(id) > 255 {
			return nil, matrix.InvalidParam("%s: key ID %q must be <algorithm>:<key id>", field, id)
		}
		raw := m[id]
		if len(raw) == 0 || (raw[0] != '{' && raw[0] != '"') {
			return nil, matrix.BadJSON("%s: key %s must be an object or a string", field, id)
		}
		canon, err := Canonical(raw)
		if err != nil {
			return nil, matrix.BadJSON("%s: key %s: %v", field, id, err)
		}
		if raw[0] == '{' {
			var k struct {
				Key        *string                      `json:"key"`
				Signatures map[string]map[string]string `json:"signatures"`
			}
			if json.Unmarshal(raw, &k) != nil {
				return nil, matrix.BadJSON("%s: key %s has the wrong shape", field, id)
			}
			if alg == "signed_curve25519" {
				if k.Key == nil || k.Signatures == nil {
					return nil, matrix.BadJSON("%s: signed key %s must have key and signatures", field, id)
				}
				if signingKey != "" {
					if err := VerifySignature(raw, userID, "ed25519:"+deviceID, signingKey); err != nil {
						return nil, sigError(field+" "+id, err)
					}
				}
			}
		} else if alg == "signed_curve25519" {
			return nil, matrix.BadJSON("%s: signed key %s must be an object", field, id)
		}
		out = append(out, store.OneTimeKey{KeyID: id, Algorithm: alg, JSON: canon})
	}
	return out, nil
}

// --- /keys/query ------------------------------------------------------------

// QueryResult is the body of the /keys/query answer.
type QueryResult struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
	Failures        map[string]any                        `json:"failures"`
}

// Query returns the device and cross-signing keys of users. An empty device
// list asks for every device. Other servers' users are asked of their
// servers within timeout (0: DefaultRemoteTimeout) unless their list is
// cached here; servers that do not answer are listed in failures.
func (s *Service) Query(ctx context.Context, requester string, users map[string][]string, timeout time.Duration) (*QueryResult, error) {
	if len(users) > MaxQueryUsers {
		return nil, matrix.InvalidParam("At most %d users can be queried at once", MaxQueryUsers)
	}
	res := &QueryResult{
		DeviceKeys:      map[string]map[string]json.RawMessage{},
		MasterKeys:      map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{},
		UserSigningKeys: map[string]json.RawMessage{},
		Failures:        map[string]any{},
	}
	remote := map[string][]string{}
	for userID, devices := range users {
		if !matrix.ValidUserID(userID) {
			return nil, matrix.InvalidParam("%q is not a valid user ID", userID)
		}
		if !s.isLocal(userID) {
			if !s.federated() {
				// Say so per server, as Synapse does for servers it cannot reach.
				res.Failures[matrix.ServerOf(userID)] = map[string]any{"status": http.StatusServiceUnavailable, "message": "Federation is not available"}
				continue
			}
			remote[userID] = devices
			continue
		}
		out := map[string]json.RawMessage{}
		res.DeviceKeys[userID] = out
		dks, err := s.store.DeviceKeys(ctx, userID, devices)
		if err != nil {
			return nil, err
		}
		sigs, err := s.store.KeySignatures(ctx, userID)
		if err != nil {
			return nil, err
		}
		byTarget := map[string][]store.KeySignature{}
		for _, sg := range sigs {
			// Signatures over a user's keys by other users (their user-signing
			// keys) are shown to the signer only, as Synapse does.
			if sg.SignerUserID == userID || sg.SignerUserID == requester {
				byTarget[sg.TargetKeyID] = append(byTarget[sg.TargetKeyID], sg)
			}
		}
		for _, dk := range dks {
			j, err := mergeKey(dk.JSON, byTarget[dk.DeviceID], dk.DisplayName)
			if err != nil {
				return nil, err
			}
			out[dk.DeviceID] = j
		}
		csk, err := s.store.CrossSigningKeys(ctx, userID)
		if err != nil {
			return nil, err
		}
		for typ, k := range csk {
			j, err := mergeKey(k.JSON, byTarget[k.PubKey], nil)
			if err != nil {
				return nil, err
			}
			switch typ {
			case "master":
				res.MasterKeys[userID] = j
			case "self_signing":
				res.SelfSigningKeys[userID] = j
			case "user_signing":
				if userID == requester {
					res.UserSigningKeys[userID] = j
				}
			}
		}
	}
	if len(remote) > 0 {
		if err := s.queryRemote(ctx, res, remote, timeout); err != nil {
			return nil, err
		}
		if err := s.mergeSignerSignatures(ctx, requester, res, remote); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// mergeKey adds stored signatures and unsigned.device_display_name to a key.
func mergeKey(raw json.RawMessage, sigs []store.KeySignature, displayName *string) (json.RawMessage, error) {
	if len(sigs) == 0 && displayName == nil {
		return raw, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if len(sigs) > 0 {
		all := map[string]map[string]string{}
		if r, ok := m["signatures"]; ok {
			_ = json.Unmarshal(r, &all)
		}
		for _, sg := range sigs {
			if all[sg.SignerUserID] == nil {
				all[sg.SignerUserID] = map[string]string{}
			}
			all[sg.SignerUserID][sg.SignerKeyID] = sg.Signature
		}
		b, err := json.Marshal(all)
		if err != nil {
			return nil, err
		}
		m["signatures"] = b
	}
	if displayName != nil {
		b, err := json.Marshal(map[string]string{"device_display_name": *displayName})
		if err != nil {
			return nil, err
		}
		m["unsigned"] = b
	}
	return json.Marshal(m)
}

// --- /keys/claim ------------------------------------------------------------

// ClaimResult is the body of the /keys/claim answer.
type ClaimResult struct {
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	Failures    map[string]any                                   `json:"failures"`
}

// Claim hands out one key per requested device: a one-time key (each is
// given out exactly once) or, when none is left, the fallback key. Other
// servers' devices are claimed from their servers within timeout (0:
// DefaultRemoteTimeout).
func (s *Service) Claim(ctx context.Context, req map[string]map[string]string, timeout time.Duration) (*ClaimResult, error) {
	res := &ClaimResult{OneTimeKeys: map[string]map[string]map[string]json.RawMessage{}, Failures: map[string]any{}}
	var reqs []store.ClaimRequest
	remote := map[string]map[string]map[string]string{} // server → user → device → algorithm
	n := 0
	for userID, devices := range req {
		if !matrix.ValidUserID(userID) {
			return nil, matrix.InvalidParam("%q is not a valid user ID", userID)
		}
		for deviceID, alg := range devices {
			if alg == "" {
				return nil, matrix.InvalidParam("Empty algorithm for %s %s", userID, deviceID)
			}
			if n++; n > MaxClaims {
				return nil, matrix.InvalidParam("At most %d keys can be claimed at once", MaxClaims)
			}
		}
		if !s.isLocal(userID) {
			srv := matrix.ServerOf(userID)
			if !s.federated() {
				res.Failures[srv] = map[string]any{"status": http.StatusServiceUnavailable, "message": "Federation is not available"}
				continue
			}
			if remote[srv] == nil {
				remote[srv] = map[string]map[string]string{}
			}
			remote[srv][userID] = devices
			continue
		}
		for deviceID, alg := range devices {
			reqs = append(reqs, store.ClaimRequest{UserID: userID, DeviceID: deviceID, Algorithm: alg})
			if len(reqs) > MaxClaims {
				return nil, matrix.InvalidParam("At most %d keys can be claimed at once", MaxClaims)
			}
		}
	}
	// A stable order keeps the transaction's work deterministic.
	sort.Slice(reqs, func(i, j int) bool {
		if reqs[i].UserID != reqs[j].UserID {
			return reqs[i].UserID < reqs[j].UserID
		}
		return reqs[i].DeviceID < reqs[j].DeviceID
	})
	if len(remote) > 0 {
		s.claimRemote(ctx, res, remote, timeout)
	}
	if len(reqs) == 0 {
		return res, nil
	}
	owners := make([]string, len(reqs))
	for i, r := range reqs {
		owners[i] = r.UserID
	}
	w := s.Changes.Begin(keyCounts(owners...)...)
	claimed, err := s.store.ClaimKeys(w.Context(ctx), reqs)
	w.Done(0)
	if err != nil {
		return nil, err
	}
	for _, c := range claimed {
		u := res.OneTimeKeys[c.UserID]
		if u == nil {
			u = map[string]map[string]json.RawMessage{}
			res.OneTimeKeys[c.UserID] = u
		}
		u[c.DeviceID] = map[string]json.RawMessage{c.Key.KeyID: c.Key.JSON}
	}
	return res, nil
}

// --- device lists -------------------------------------------------------------

// DeviceListChanges reports, for a /sync of userID covering the stream
// range (since, upto], the users whose device lists the client should
// refetch (changed) and those it no longer shares any room with (left).
// changed holds userID itself and users sharing a joined room with it whose
// devices, device keys or cross-signing keys changed in the range, plus
// users who began sharing a joined room in the range (they joined, or
// userID did). left holds users who, after a membership change in the
// range (theirs or userID's), share no joined room with userID. Both are
// computed from the memberships table's current state.
func (s *Service) DeviceListChanges(ctx context.Context, userID string, since, upto int64) (changed, left []string, err error) {
	changed, left, err = s.store.DeviceListChanges(ctx, userID, since, upto)
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	return changed, left, err
}

// --- /sync --------------------------------------------------------------------

// SyncExtras gives a /sync of (userID, deviceID) from since up to upto its
// E2EE parts. It first deletes the device's to-device messages at or below
// since (the client acknowledged them by syncing from there), then returns
// up to MaxToDeviceBatch messages in (since, upto], oldest first.
//
// nextToDevicePos is upto when every pending message fitted, else the
// position of the last one returned: the next sync token must then not go
// beyond it, so the caller must use min(upto, nextToDevicePos) as the upper
// bound of everything else in this response (and as the next token).
//
// otkCounts always holds signed_curve25519; unusedFallback lists the
// algorithms whose fallback key has not been claimed yet
// (device_unused_fallback_key_types).
func (s *Service) SyncExtras(ctx context.Context, userID, deviceID string, since, upto int64) (toDevice []json.RawMessage, nextToDevicePos int64, otkCounts map[string]int, unusedFallback []string, err error) {
	msgs, err := s.store.ToDeviceMessages(ctx, userID, deviceID, since, since, upto, MaxToDeviceBatch)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	toDevice = make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		toDevice[i] = m.JSON
	}
	nextToDevicePos = upto
	if len(msgs) == MaxToDeviceBatch {
		nextToDevicePos = msgs[len(msgs)-1].Pos
	}
	otkCounts, unusedFallback, err = s.KeyCounts(ctx, userID, deviceID)
	if err != nil {
		return nil, 0, nil, nil, err
	}
	return toDevice, nextToDevicePos, otkCounts, unusedFallback, nil
}

// KeyCounts is the device's one-time key counts (always with
// signed_curve25519) and unused fallback key algorithms, for /sync.
func (s *Service) KeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	counts, err := s.store.OneTimeKeyCounts(ctx, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	unusedFallback, err := s.store.UnusedFallbackKeyAlgorithms(ctx, userID, deviceID)
	if err != nil {
		return nil, nil, err
	}
	if unusedFallback == nil {
		unusedFallback = []string{}
	}
	return withDefaultCount(counts), unusedFallback, nil
}
