package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// DeviceSigningRequest is the body of POST /keys/device_signing/upload
// (without "auth", which the API handles).
type DeviceSigningRequest struct {
	MasterKey      json.RawMessage `json:"master_key"`
	SelfSigningKey json.RawMessage `json:"self_signing_key"`
	UserSigningKey json.RawMessage `json:"user_signing_key"`
}

type crossSigningBody struct {
	UserID *string           `json:"user_id"`
	Usage  []string          `json:"usage"`
	Keys   map[string]string `json:"keys"`
}

func parseCrossSigningKey(userID, typ string, raw json.RawMessage) (*store.CrossSigningKey, error) {
	var b crossSigningBody
	if string(raw) == "null" || raw[0] != '{' || json.Unmarshal(raw, &b) != nil {
		return nil, matrix.BadJSON("%s_key must be an object", typ)
	}
	if b.UserID == nil || b.Usage == nil || b.Keys == nil {
		return nil, matrix.BadJSON("%s_key must have user_id, usage and keys", typ)
	}
	if *b.UserID != userID {
		return nil, matrix.InvalidParam("%s_key.user_id must be your user ID", typ)
	}
	usage := false
	for _, u := range b.Usage {
		usage = usage || u == typ
	}
	if !usage {
		return nil, matrix.InvalidParam("%s_key.usage must contain %q", typ, typ)
	}
	if len(b.Keys) != 1 {
		return nil, matrix.InvalidParam("%s_key.keys must hold exactly one key", typ)
	}
	var pub string
	for id, v := range b.Keys {
		p, ok := strings.CutPrefix(id, "ed25519:")
		if !ok || p != v || v == "" {
			return nil, matrix.InvalidParam("%s_key.keys must be {\"ed25519:<public key>\": \"<public key>\"}", typ)
		}
		if k, err := decodeB64(v); err != nil || len(k) != 32 {
			return nil, matrix.InvalidParam("%s_key holds an invalid ed25519 key", typ)
		}
		pub = v
	}
	j, err := withoutUnsigned(raw)
	if err != nil {
		return nil, matrix.BadJSON("%s_key: %v", typ, err)
	}
	return &store.CrossSigningKey{UserID: userID, Type: typ, PubKey: pub, JSON: j}, nil
}

// PreparedSigningKeys is a validated cross-signing upload.
type PreparedSigningKeys struct {
	userID string
	keys   []store.CrossSigningKey
	// NeedsAuth: the upload replaces existing keys, so the spec requires
	// user-interactive auth. A first upload (no master key yet) and a
	// repeat of the stored keys need none (spec v1.11, MSC3967; Synapse).
	NeedsAuth bool
}

// PrepareSigningKeys validates a cross-signing key upload.
func (s *Service) PrepareSigningKeys(ctx context.Context, userID string, req *DeviceSigningRequest) (*PreparedSigningKeys, error) {
	existing, err := s.store.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	p := &PreparedSigningKeys{userID: userID}
	var master *store.CrossSigningKey
	if req.MasterKey != nil {
		if master, err = parseCrossSigningKey(userID, "master", req.MasterKey); err != nil {
			return nil, err
		}
		p.keys = append(p.keys, *master)
	} else if m, ok := existing["master"]; ok {
		master = &m
	}
	for _, sub := range []struct {
		typ string
		raw json.RawMessage
	}{{"self_signing", req.SelfSigningKey}, {"user_signing", req.UserSigningKey}} {
		if sub.raw == nil {
			continue
		}
		k, err := parseCrossSigningKey(userID, sub.typ, sub.raw)
		if err != nil {
			return nil, err
		}
		if master == nil {
			return nil, matrix.Errorf(http.StatusBadRequest, ErrInvalidSignature, "No master key to check the %s key's signature with; upload master_key too", sub.typ)
		}
		if err := VerifySignature(sub.raw, userID, "ed25519:"+master.PubKey, master.PubKey); err != nil {
			return nil, matrix.Errorf(http.StatusBadRequest, ErrInvalidSignature, "%s_key is not signed by the master key: %v", sub.typ, err)
		}
		p.keys = append(p.keys, *k)
	}
	if len(p.keys) == 0 {
		return nil, matrix.MissingParam("Upload at least one of master_key, self_signing_key, user_signing_key")
	}
	if _, ok := existing["master"]; ok {
		for _, k := range p.keys {
			if old, ok := existing[k.Type]; !ok || !bytes.Equal(old.JSON, k.JSON) {
				p.NeedsAuth = true
			}
		}
	}
	return p, nil
}

// StoreSigningKeys stores prepared cross-signing keys (after any auth).
func (s *Service) StoreSigningKeys(ctx context.Context, p *PreparedSigningKeys) error {
	wctx, done := s.deviceChange(ctx, p.userID)
	err := s.store.PutCrossSigningKeys(wctx, p.userID, p.keys)
	done(err == nil)
	return err
}

// SignatureFailure is one entry of /keys/signatures/upload's failures.
type SignatureFailure struct {
	Errcode string `json:"errcode"`
	Error   string `json:"error"`
}

// UploadSignatures stores signatures over keys: the user's self-signing key
// over their own devices, their devices over their own master key, and
// their user-signing key over other users' master keys. Each bad entry is
// reported in the returned failures (user → key ID → failure); the good
// ones are stored.
func (s *Service) UploadSignatures(ctx context.Context, userID string, body map[string]map[string]json.RawMessage) (map[string]map[string]SignatureFailure, error) {
	n := 0
	for _, ks := range body {
		n += len(ks)
	}
	if n > MaxSignatureTargets {
		return nil, matrix.InvalidParam("At most %d keys can be signed at once", MaxSignatureTargets)
	}
	failures := map[string]map[string]SignatureFailure{}
	fail := func(user, key, code, format string, args ...any) {
		if failures[user] == nil {
			failures[user] = map[string]SignatureFailure{}
		}
		failures[user][key] = SignatureFailure{Errcode: code, Error: matrix.Errorf(400, code, format, args...).Msg}
	}
	own, err := s.store.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, err
	}
	var sigs []store.KeySignature
	changed := map[string]bool{}
	users := make([]string, 0, len(body))
	for u := range body {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, target := range users {
		for keyID, obj := range body[target] {
			if len(obj) == 0 || obj[0] != '{' {
				fail(target, keyID, matrix.ErrBadJSON, "The signed key must be an object")
				continue
			}
			theirs := own
			if target != userID {
				if s.isLocal(target) {
					theirs, err = s.store.CrossSigningKeys(ctx, target)
				} else {
					// Another server's user: their master key as their server
					// tells it. The signature stays here, shown to the signer
					// only, as for local users (spec: "Cross-signing").
					theirs, err = s.remoteMasterKey(ctx, target)
				}
				if err != nil {
					return nil, err
				}
			}
			var stored json.RawMessage
			var signerKeyID, signerPub string // who must have signed
			var signerDevices map[string]string
			switch {
			case target == userID && own["master"].PubKey == keyID && keyID != "":
				// A device of ours signing our master key.
				stored = own["master"].JSON
				dks, err := s.store.DeviceKeys(ctx, userID, nil)
				if err != nil {
					return nil, err
				}
				signerDevices = map[string]string{}
				for _, d := range dks {
					signerDevices["ed25519:"+d.DeviceID] = d.Ed25519
				}
			case target == userID:
				// Our self-signing key signing one of our devices.
				dks, err := s.store.DeviceKeys(ctx, userID, []string{keyID})
				if err != nil {
					return nil, err
				}
				if len(dks) == 0 {
					fail(target, keyID, matrix.ErrNotFound, "Unknown device or key %s", keyID)
					continue
				}
				ssk, ok := own["self_signing"]
				if !ok {
					fail(target, keyID, ErrInvalidSignature, "You have no self-signing key")
					continue
				}
				stored, signerKeyID, signerPub = dks[0].JSON, "ed25519:"+ssk.PubKey, ssk.PubKey
			default:
				// Our user-signing key signing someone's master key.
				m, ok := theirs["master"]
				if !ok || m.PubKey != keyID {
					fail(target, keyID, matrix.ErrNotFound, "%s has no master key %s", target, keyID)
					continue
				}
				usk, ok := own["user_signing"]
				if !ok {
					fail(target, keyID, ErrInvalidSignature, "You have no user-signing key")
					continue
				}
				stored, signerKeyID, signerPub = m.JSON, "ed25519:"+usk.PubKey, usk.PubKey
			}
			a, err1 := StripForSigning(stored)
			b, err2 := StripForSigning(obj)
			if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
				fail(target, keyID, matrix.ErrInvalidParam, "The signed object does not match the stored key")
				continue
			}
			var parsed struct {
				Signatures map[string]map[string]string `json:"signatures"`
			}
			_ = json.Unmarshal(obj, &parsed)
			if signerDevices != nil {
				// Every signature by one of our devices must verify; at least one is needed.
				found := 0
				bad := false
				for sk, sig := range parsed.Signatures[userID] {
					pub, ok := signerDevices[sk]
					if !ok {
						continue
					}
					if VerifySignature(obj, userID, sk, pub) != nil {
						bad = true
						break
					}
					found++
					sigs = append(sigs, store.KeySignature{TargetUserID: target, TargetKeyID: keyID, SignerUserID: userID, SignerKeyID: sk, Signature: sig})
				}
				if bad || found == 0 {
					if found > 0 {
						sigs = sigs[:len(sigs)-found]
					}
					fail(target, keyID, ErrInvalidSignature, "Invalid or missing signature by one of your devices")
					continue
				}
				changed[userID] = true
				continue
			}
			if err := VerifySignature(obj, userID, signerKeyID, signerPub); err != nil {
				fail(target, keyID, ErrInvalidSignature, "Invalid signature: %v", err)
				continue
			}
			sigs = append(sigs, store.KeySignature{TargetUserID: target, TargetKeyID: keyID, SignerUserID: userID, SignerKeyID: signerKeyID, Signature: parsed.Signatures[userID][signerKeyID]})
			// Signatures over our own keys change our device list; a
			// user-signing signature is visible to us only, so it changes ours too.
			changed[userID] = true
		}
	}
	if len(sigs) > 0 {
		var cu []string
		for u := range changed {
			cu = append(cu, u)
		}
		sort.Strings(cu)
		wctx, done := s.deviceChange(ctx, cu...)
		err := s.store.PutKeySignatures(wctx, sigs, cu)
		done(err == nil)
		if err != nil {
			return nil, err
		}
	}
	return failures, nil
}

// remoteMasterKey is another server's user's master key, from the cache or
// their server.
func (s *Service) remoteMasterKey(ctx context.Context, userID string) (map[string]store.CrossSigningKey, error) {
	out := map[string]store.CrossSigningKey{}
	if !s.federated() {
		return out, nil
	}
	res := &QueryResult{DeviceKeys: map[string]map[string]json.RawMessage{}, MasterKeys: map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{}, UserSigningKeys: map[string]json.RawMessage{}, Failures: map[string]any{}}
	if err := s.queryRemote(ctx, res, map[string][]string{userID: {}}, DefaultRemoteTimeout); err != nil {
		return nil, err
	}
	if raw, ok := res.MasterKeys[userID]; ok {
		if k, err := parseCrossSigningKey(userID, "master", raw); err == nil {
			out["master"] = *k
		}
	}
	return out, nil
}

// mergeSignerSignatures adds to remote users' master keys in res the
// signatures the requester made over them (kept here, shown to the signer
// only).
func (s *Service) mergeSignerSignatures(ctx context.Context, requester string, res *QueryResult, users map[string][]string) error {
	if requester == "" {
		return nil
	}
	for userID := range users {
		raw, ok := res.MasterKeys[userID]
		if !ok {
			continue
		}
		k, err := parseCrossSigningKey(userID, "master", raw)
		if err != nil {
			continue
		}
		sigs, err := s.store.KeySignatures(ctx, userID)
		if err != nil {
			return err
		}
		var mine []store.KeySignature
		for _, sg := range sigs {
			if sg.SignerUserID == requester && sg.TargetKeyID == k.PubKey {
				mine = append(mine, sg)
			}
		}
		if len(mine) > 0 {
			if res.MasterKeys[userID], err = mergeKey(raw, mine, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
