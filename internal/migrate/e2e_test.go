package migrate_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"conclave/internal/homeserver/hstest"
	"conclave/internal/keys"
	"conclave/internal/store/storetest/pgtest"
)

type signer struct {
	pub  string
	priv ed25519.PrivateKey
}

func newSigner(t *testing.T) *signer {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{pub: base64.RawStdEncoding.EncodeToString(pub), priv: priv}
}

// sign adds signatures[userID][keyID] over obj's canonical form.
func (sg *signer) sign(t *testing.T, obj map[string]any, userID, keyID string) map[string]any {
	t.Helper()
	c := map[string]any{}
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			c[k] = v
		}
	}
	raw, _ := json.Marshal(c)
	canon, err := keys.Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
	}
	us, _ := sigs[userID].(map[string]any)
	if us == nil {
		us = map[string]any{}
	}
	us[keyID] = base64.RawStdEncoding.EncodeToString(ed25519.Sign(sg.priv, canon))
	sigs[userID] = us
	obj["signatures"] = sigs
	return obj
}

func deviceKeys(t *testing.T, u *hstest.User, ed *signer) map[string]any {
	curve := make([]byte, 32)
	rand.Read(curve)
	obj := map[string]any{
		"user_id": u.UserID, "device_id": u.DeviceID,
		"algorithms": []string{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys":       map[string]any{"ed25519:" + u.DeviceID: ed.pub, "curve25519:" + u.DeviceID: base64.RawStdEncoding.EncodeToString(curve)},
	}
	return ed.sign(t, obj, u.UserID, "ed25519:"+u.DeviceID)
}

func oneTimeKeys(t *testing.T, u *hstest.User, ed *signer, n int) map[string]any {
	m := map[string]any{}
	for i := 0; i < n; i++ {
		k := make([]byte, 32)
		rand.Read(k)
		m[fmt.Sprintf("signed_curve25519:K%d", i)] = ed.sign(t, map[string]any{"key": base64.RawStdEncoding.EncodeToString(k)}, u.UserID, "ed25519:"+u.DeviceID)
	}
	return m
}

func csKey(t *testing.T, userID, usage string, k, by *signer) map[string]any {
	obj := map[string]any{"user_id": userID, "usage": []string{usage}, "keys": map[string]any{"ed25519:" + k.pub: k.pub}}
	if by != nil {
		by.sign(t, obj, userID, "ed25519:"+by.pub)
	}
	return obj
}

// get digs into decoded JSON.
func get(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func eventIDs(list any) []string {
	var out []string
	evs, _ := list.([]any)
	for _, e := range evs {
		if id, ok := get(e, "event_id").(string); ok {
			out = append(out, id)
		}
	}
	return out
}

// allMessages pages /messages backwards from the end of the room, 7 at a time.
func allMessages(t *testing.T, s *hstest.Server, token, room string) []string {
	t.Helper()
	var ids []string
	from := ""
	for i := 0; i < 100; i++ {
		p := hstest.Path("/rooms/%s/messages", room) + "?dir=b&limit=7"
		if from != "" {
			p += "&from=" + from
		}
		r := s.MustOK(t, "GET", p, token, nil)
		ids = append(ids, eventIDs(r.JSON["chunk"])...)
		from = r.Str("end")
		if from == "" {
			return ids
		}
	}
	t.Fatal("pagination does not end")
	return nil
}

func streamPos(t *testing.T, token string) int64 {
	t.Helper()
	p, _, _ := strings.Cut(strings.TrimPrefix(token, "s"), "_")
	n, err := strconv.ParseInt(p, 10, 64)
	if err != nil {
		t.Fatalf("sync token %q: %v", token, err)
	}
	return n
}

func rawGet(t *testing.T, s *hstest.Server, path, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// snapshot is what the test reads from a server before and after.
type snapshot struct {
	aliceSync, bobSync map[string]any
	messages           []string
	keysQuery          map[string]any
	backup, backupKeys map[string]any
	profile, pushRule  map[string]any
	directory, public  map[string]any
	devices            map[string]any
	relations, threads map[string]any
	search             []string
}

func takeSnapshot(t *testing.T, s *hstest.Server, alice, bob *hstest.User, room, related string) *snapshot {
	t.Helper()
	sn := &snapshot{}
	sn.aliceSync = s.MustOK(t, "GET", hstest.Path("/sync"), alice.Token, nil).JSON
	sn.messages = allMessages(t, s, alice.Token, room)
	sn.keysQuery = s.MustOK(t, "POST", hstest.Path("/keys/query"), bob.Token, map[string]any{"device_keys": map[string]any{alice.UserID: []string{}}}).JSON
	sn.backup = s.MustOK(t, "GET", hstest.Path("/room_keys/version"), alice.Token, nil).JSON
	sn.backupKeys = s.MustOK(t, "GET", hstest.Path("/room_keys/keys")+"?version="+fmt.Sprint(sn.backup["version"]), alice.Token, nil).JSON
	sn.profile = s.MustOK(t, "GET", hstest.Path("/profile/%s", alice.UserID), bob.Token, nil).JSON
	sn.pushRule = s.MustOK(t, "GET", hstest.Path("/pushrules/global/override/no.pineapples"), alice.Token, nil).JSON
	sn.directory = s.MustOK(t, "GET", hstest.Path("/directory/room/%s", "#migrating:localhost"), "", nil).JSON
	sn.public = s.MustOK(t, "GET", hstest.Path("/publicRooms"), bob.Token, nil).JSON
	sn.devices = s.MustOK(t, "GET", hstest.Path("/devices"), alice.Token, nil).JSON
	v1 := "/_matrix/client/v1/rooms/" + url.PathEscape(room)
	sn.relations = s.MustOK(t, "GET", v1+"/relations/"+url.PathEscape(related), bob.Token, nil).JSON
	sn.threads = s.MustOK(t, "GET", v1+"/threads", bob.Token, nil).JSON
	res := s.MustOK(t, "POST", hstest.Path("/search"), bob.Token, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "pineapple"}}})
	for _, r := range get(res.JSON, "search_categories", "room_events", "results").([]any) {
		sn.search = append(sn.search, get(r, "result", "event_id").(string))
	}
	sort.Strings(sn.search)
	return sn
}

// stable drops what is in memory or depends on the clock: presence, the
// typing serial of sync tokens, unsigned.age.
func stable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			switch k {
			case "presence", "age":
				continue
			case "next_batch":
				if s, ok := e.(string); ok {
					e, _, _ = strings.Cut(s, "_")
				}
			}
			out[k] = stable(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = stable(e)
		}
		return out
	}
	return v
}

func same(t *testing.T, what string, before, after any) {
	t.Helper()
	before, after = stable(before), stable(after)
	if !reflect.DeepEqual(before, after) {
		b, _ := json.Marshal(before)
		a, _ := json.Marshal(after)
		t.Errorf("%s differs after the migration:\nbefore %s\nafter  %s", what, b, a)
	}
}

// TestMigrateServer fills a SQLite server through the client API, stops it,
// migrates, runs a server on PostgreSQL with the same data directory and
// checks through the API that it serves the same things.
func TestMigrateServer(t *testing.T) {
	needPostgres(t)
	cfg := hstest.Default(t) // SQLite: the data directory's conclave.db
	s := hstest.StartConfig(t, cfg)

	alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
	// A second device for alice, by password.
	login := s.MustOK(t, "POST", hstest.Path("/login"), "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery alice", "initial_device_display_name": "laptop"})
	alice2 := &hstest.User{UserID: alice.UserID, DeviceID: login.Str("device_id"), Token: login.Str("access_token")}

	s.MustOK(t, "PUT", hstest.Path("/profile/%s/displayname", alice.UserID), alice.Token, map[string]any{"displayname": "Alice Ångström"})
	s.MustOK(t, "PUT", hstest.Path("/profile/%s/avatar_url", alice.UserID), alice.Token, map[string]any{"avatar_url": "mxc://localhost/avatar"})

	// E2EE: device keys, one-time and fallback keys, cross-signing, a signature.
	aed, bed := newSigner(t), newSigner(t)
	aliceKeys := deviceKeys(t, alice, aed)
	fallback := aed.sign(t, map[string]any{"key": "ZmFsbGJhY2s", "fallback": true}, alice.UserID, "ed25519:"+alice.DeviceID)
	s.MustOK(t, "POST", hstest.Path("/keys/upload"), alice.Token, map[string]any{"device_keys": aliceKeys,
		"one_time_keys": oneTimeKeys(t, alice, aed, 5), "fallback_keys": map[string]any{"signed_curve25519:F1": fallback}})
	s.MustOK(t, "POST", hstest.Path("/keys/upload"), bob.Token, map[string]any{"device_keys": deviceKeys(t, bob, bed), "one_time_keys": oneTimeKeys(t, bob, bed, 3)})
	master, ssk, usk := newSigner(t), newSigner(t), newSigner(t)
	s.MustOK(t, "POST", hstest.Path("/keys/device_signing/upload"), alice.Token, map[string]any{
		"master_key":       csKey(t, alice.UserID, "master", master, nil),
		"self_signing_key": csKey(t, alice.UserID, "self_signing", ssk, master),
		"user_signing_key": csKey(t, alice.UserID, "user_signing", usk, master),
	})
	signedDev := ssk.sign(t, map[string]any{"user_id": alice.UserID, "device_id": alice.DeviceID, "algorithms": aliceKeys["algorithms"], "keys": aliceKeys["keys"]}, alice.UserID, "ed25519:"+ssk.pub)
	s.MustOK(t, "POST", hstest.Path("/keys/signatures/upload"), alice.Token, map[string]any{alice.UserID: map[string]any{alice.DeviceID: signedDev}})

	// Key backup.
	v := s.MustOK(t, "POST", hstest.Path("/room_keys/version"), alice.Token, map[string]any{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": map[string]any{"public_key": "cHVibGlj"}}).Str("version")

	// Rooms: a public one with an alias, messages, state, a redaction, a
	// reaction, a thread reply, receipts, tags; a private one.
	room := s.MustOK(t, "POST", hstest.Path("/createRoom"), alice.Token, map[string]any{"name": "Migrating", "preset": "public_chat", "room_alias_name": "migrating", "visibility": "public"}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/join/%s", room), bob.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/state/m.room.topic", room), alice.Token, map[string]any{"topic": "moving house"})
	var msgIDs []string
	for i := 0; i < 25; i++ {
		body := fmt.Sprintf("message %d", i)
		if i == 7 {
			body = "I like pineapple on pizza"
		}
		if i == 9 {
			body = "pineapple, secretly"
		}
		who := alice
		if i%3 == 2 {
			who = bob
		}
		msgIDs = append(msgIDs, s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", room, "m"+strconv.Itoa(i)), who.Token, map[string]any{"msgtype": "m.text", "body": body}).Str("event_id"))
	}
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/redact/%s/r1", room, msgIDs[9]), alice.Token, map[string]any{"reason": "oops"})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.reaction/x1", room), bob.Token, map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": msgIDs[7], "key": "🍍"}})
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/th1", room), bob.Token, map[string]any{"msgtype": "m.text", "body": "in a thread",
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": msgIDs[3]}})
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", room, msgIDs[24]), bob.Token, map[string]any{})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/rooms/%s/account_data/m.tag", alice.UserID, room), alice.Token, map[string]any{"tags": map[string]any{"u.work": map[string]any{"order": 0.5}}})
	s.MustOK(t, "PUT", hstest.Path("/user/%s/account_data/org.example.settings", alice.UserID), alice.Token, map[string]any{"theme": "dark"})
	s.MustOK(t, "PUT", hstest.Path("/pushrules/global/override/no.pineapples"), alice.Token, map[string]any{"actions": []any{},
		"conditions": []any{map[string]any{"kind": "event_match", "key": "content.body", "pattern": "*pineapple*"}}})
	private := s.MustOK(t, "POST", hstest.Path("/createRoom"), carol.Token, map[string]any{"preset": "private_chat", "invite": []string{alice.UserID}}).Str("room_id")
	s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/p1", private), carol.Token, map[string]any{"msgtype": "m.text", "body": "psst"})
	s.MustOK(t, "PUT", hstest.Path("/room_keys/keys/%s/%s", room, "SESSION1")+"?version="+v, alice.Token, map[string]any{"first_message_index": 1, "forwarded_count": 0,
		"is_verified": true, "session_data": map[string]any{"ciphertext": "c", "ephemeral": "e", "mac": "m"}})
	s.MustOK(t, "POST", hstest.Path("/user/%s/filter", alice.UserID), alice.Token, map[string]any{"room": map[string]any{"timeline": map[string]any{"limit": 3}}})

	// Media.
	content := bytes.Repeat([]byte("migrated media "), 100)
	up := s.MustOK(t, "POST", "/_matrix/media/v3/upload?filename=notes.txt", alice.Token, content)
	mediaID := strings.TrimPrefix(up.Str("content_uri"), "mxc://localhost/")

	// A to-device message bob has not received yet (bob never synced).
	s.MustOK(t, "PUT", hstest.Path("/sendToDevice/%s/%s", "m.room_key_request", "td1"), alice.Token, map[string]any{"messages": map[string]any{bob.UserID: map[string]any{bob.DeviceID: map[string]any{"secret": "for bob"}}}})

	// Devices' last sightings written now, not at the shutdown after the
	// snapshot (the snapshot's own requests come within two minutes of
	// them, from the same address: not written again).
	if err := s.HS.Accounts.FlushSeen(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, s, alice, bob, room, msgIDs[7])
	if len(before.search) != 1 || before.search[0] != msgIDs[7] {
		t.Fatalf("search before: %v", before.search)
	}
	s.Stop()

	dsn := pgtest.NewDatabase(t)
	code, out, errOut := run("--from", "sqlite:"+cfg.DataDir, "--to", dsn)
	if code != 0 {
		t.Fatalf("migrate: %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "The signing key and the media files stay in "+cfg.DataDir) {
		t.Errorf("no data directory reminder:\n%s", out)
	}
	t.Logf("migrate:\n%s", out)

	cfg2 := cfg
	cfg2.Database = dsn
	p := hstest.StartConfig(t, cfg2)

	after := takeSnapshot(t, p, alice, bob, room, msgIDs[7])
	if !reflect.DeepEqual(s.HS.SigningKey, p.HS.SigningKey) {
		t.Errorf("signing key %s after the migration, was %s", p.HS.SigningKey.ID, s.HS.SigningKey.ID)
	}
	same(t, "alice's initial /sync", before.aliceSync, after.aliceSync)
	same(t, "/messages", before.messages, after.messages)
	same(t, "/keys/query", before.keysQuery, after.keysQuery)
	same(t, "backup version", before.backup, after.backup)
	same(t, "backed-up keys", before.backupKeys, after.backupKeys)
	same(t, "profile", before.profile, after.profile)
	same(t, "push rule", before.pushRule, after.pushRule)
	same(t, "directory", before.directory, after.directory)
	same(t, "public rooms", before.public, after.public)
	same(t, "devices", before.devices, after.devices)
	same(t, "search", before.search, after.search)
	same(t, "relations", before.relations, after.relations)
	same(t, "threads", before.threads, after.threads)
	if len(eventIDs(before.relations["chunk"])) != 1 || len(eventIDs(before.threads["chunk"])) != 1 {
		t.Errorf("relations %v, threads %v: want one each", before.relations, before.threads)
	}
	if len(before.messages) < 30 || get(before.aliceSync, "rooms", "join", room) == nil || get(before.aliceSync, "rooms", "invite", private) == nil {
		t.Fatalf("the snapshot is thinner than the test meant: %d messages, sync %v", len(before.messages), before.aliceSync["rooms"])
	}
	if get(after.keysQuery, "master_keys", alice.UserID, "keys", "ed25519:"+master.pub) == nil ||
		get(after.keysQuery, "device_keys", alice.UserID, alice.DeviceID, "signatures", alice.UserID, "ed25519:"+ssk.pub) == nil {
		t.Errorf("cross-signing lost: %v", after.keysQuery)
	}

	// Every access token still works; the password too.
	for _, u := range []*hstest.User{alice, alice2, bob, carol} {
		if r := p.MustOK(t, "GET", hstest.Path("/account/whoami"), u.Token, nil); r.Str("user_id") != u.UserID || r.Str("device_id") != u.DeviceID {
			t.Errorf("whoami: %s", r.Body)
		}
	}
	p.MustOK(t, "POST", hstest.Path("/login"), "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "bob"}, "password": "correct horse battery bob"})
	if r := p.Do(t, "POST", hstest.Path("/login"), "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "bob"}, "password": "wrong"}); r.Status != 403 {
		t.Errorf("wrong password: %d", r.Status)
	}

	// One-time keys: claimed in upload order; then the fallback key.
	claimed := map[string]bool{}
	for i := 0; i < 6; i++ {
		r := p.MustOK(t, "POST", hstest.Path("/keys/claim"), bob.Token, map[string]any{"one_time_keys": map[string]any{alice.UserID: map[string]any{alice.DeviceID: "signed_curve25519"}}})
		m, _ := get(r.JSON, "one_time_keys", alice.UserID, alice.DeviceID).(map[string]any)
		for id := range m {
			claimed[id] = true
		}
	}
	if len(claimed) != 6 || !claimed["signed_curve25519:F1"] {
		t.Errorf("claimed %v, want the 5 one-time keys and the fallback key", claimed)
	}
	// New one-time keys get sequence numbers after the copied ones.
	p.MustOK(t, "POST", hstest.Path("/keys/upload"), bob.Token, map[string]any{"one_time_keys": map[string]any{"signed_curve25519:NEW": bed.sign(t, map[string]any{"key": "bmV3"}, bob.UserID, "ed25519:"+bob.DeviceID)}})
	r := p.MustOK(t, "POST", hstest.Path("/keys/claim"), alice.Token, map[string]any{"one_time_keys": map[string]any{bob.UserID: map[string]any{bob.DeviceID: "signed_curve25519"}}})
	if m, _ := get(r.JSON, "one_time_keys", bob.UserID, bob.DeviceID).(map[string]any); m["signed_curve25519:K0"] == nil {
		t.Errorf("first claim after the migration gave %v, want the oldest key K0", m)
	}

	// The pending to-device message reaches bob.
	bs := p.MustOK(t, "GET", hstest.Path("/sync"), bob.Token, nil)
	td, _ := get(bs.JSON, "to_device", "events").([]any)
	if len(td) != 1 || get(td[0], "content", "secret") != "for bob" {
		t.Errorf("bob's to-device: %s", bs.Body)
	}

	// Media downloads from the same data directory.
	if st, b := rawGet(t, p, "/_matrix/client/v1/media/download/localhost/"+mediaID, alice.Token); st != 200 || !bytes.Equal(b, content) {
		t.Errorf("media download: %d, %d bytes", st, len(b))
	}

	// A new message gets a position after the old ones, and the old sync
	// token still works incrementally: it returns just the new message.
	since := before.aliceSync["next_batch"].(string)
	newID := p.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after", room), bob.Token, map[string]any{"msgtype": "m.text", "body": "after the move"}).Str("event_id")
	inc := p.MustOK(t, "GET", hstest.Path("/sync")+"?since="+since+"&timeout=0", alice.Token, nil)
	if got := eventIDs(get(inc.JSON, "rooms", "join", room, "timeline", "events")); !reflect.DeepEqual(got, []string{newID}) {
		t.Errorf("incremental sync from the old token: timeline %v, want [%s]", got, newID)
	}
	if streamPos(t, inc.Str("next_batch")) <= streamPos(t, since) {
		t.Errorf("next_batch %s not after %s", inc.Str("next_batch"), since)
	}
	if got := allMessages(t, p, alice.Token, room); len(got) != len(before.messages)+1 || got[0] != newID {
		t.Errorf("/messages after a new message: %d events, first %s", len(got), got[0])
	}
	// Device-list changes are tracked again (the devices triggers are back
	// on): alice's new login shows in bob's /keys/changes.
	bobSince := bs.Str("next_batch")
	p.MustOK(t, "POST", hstest.Path("/login"), "", map[string]any{"type": "m.login.password",
		"identifier": map[string]any{"type": "m.id.user", "user": "alice"}, "password": "correct horse battery alice"})
	ch := p.MustOK(t, "GET", hstest.Path("/keys/changes")+"?from="+bobSince+"&to="+p.MustOK(t, "GET", hstest.Path("/sync")+"?since="+bobSince+"&timeout=0", bob.Token, nil).Str("next_batch"), bob.Token, nil)
	if changed, _ := ch.JSON["changed"].([]any); len(changed) != 1 || changed[0] != alice.UserID {
		t.Errorf("/keys/changes: %s", ch.Body)
	}
	// Search indexes new messages too.
	p.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/after2", room), bob.Token, map[string]any{"msgtype": "m.text", "body": "pineapple again"})
	res := p.MustOK(t, "POST", hstest.Path("/search"), bob.Token, map[string]any{"search_categories": map[string]any{"room_events": map[string]any{"search_term": "pineapple"}}})
	if n := len(get(res.JSON, "search_categories", "room_events", "results").([]any)); n != 2 {
		t.Errorf("search after a new message: %d results, want 2", n)
	}
}
