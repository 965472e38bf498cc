//go:build goolm

package e2eetest

import (
	"bytes"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"maunium.net/go/mautrix/crypto"
	"maunium.net/go/mautrix/crypto/attachment"
	"maunium.net/go/mautrix/crypto/backup"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"conclave/internal/clamd/clamdtest"
	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// sendFile encrypts data as an attachment, uploads the ciphertext and sends
// it as an m.file in the encrypted room, as a client does.
func (c *client) sendFile(roomID id.RoomID, name string, data []byte) id.EventID {
	c.t.Helper()
	ctx := ctxT(c.t)
	ef := attachment.NewEncryptedFile()
	up, err := c.cli.UploadBytes(ctx, ef.Encrypt(data), "application/octet-stream")
	if err != nil {
		c.t.Fatal(err)
	}
	content := &event.MessageEventContent{MsgType: event.MsgFile, Body: name,
		File: &event.EncryptedFileInfo{EncryptedFile: *ef, URL: up.ContentURI.CUString()}}
	enc, err := c.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	if errors.Is(err, crypto.ErrSessionExpired) || errors.Is(err, crypto.ErrNoGroupSession) || errors.Is(err, crypto.ErrSessionNotShared) {
		users, _ := c.cli.StateStore.GetRoomJoinedOrInvitedMembers(ctx, roomID)
		if err := c.mach.ShareGroupSession(ctx, roomID, users); err != nil {
			c.t.Fatal(err)
		}
		enc, err = c.mach.EncryptMegolmEvent(ctx, roomID, event.EventMessage, content)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.cli.SendMessageEvent(ctx, roomID, event.EventEncrypted, enc)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.EventID
}

// receivedFile decrypts the event and returns the attachment it carries.
func (c *client) receivedFile(roomID id.RoomID, evtID id.EventID) *event.EncryptedFileInfo {
	c.t.Helper()
	c.waitPlain(evtID)
	evt, err := c.cli.GetEvent(ctxT(c.t), roomID, evtID)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := evt.Content.ParseRaw(evt.Type); err != nil {
		c.t.Fatal(err)
	}
	dec, err := c.mach.DecryptMegolmEvent(ctxT(c.t), evt)
	if err != nil {
		c.t.Fatal(err)
	}
	msg := dec.Content.AsMessage()
	if msg.File == nil {
		c.t.Fatal("the event carries no encrypted file")
	}
	return msg.File
}

// scanRequest asks the server's content scanner about f the way Tchap's
// clients do: the file info sealed to the scanner's public key.
func (c *client) scanRequest(s *hstest.Server, path string, f *event.EncryptedFileInfo) (int, []byte) {
	c.t.Helper()
	res, err := http.Get(s.URL + "/_matrix/media_proxy/unstable/public_key")
	if err != nil {
		c.t.Fatal(err)
	}
	var pk struct {
		PublicKey string `json:"public_key"`
	}
	json.NewDecoder(res.Body).Decode(&pk)
	res.Body.Close()
	raw, _ := base64.RawStdEncoding.DecodeString(pk.PublicKey)
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		c.t.Fatalf("public key %q: %v", pk.PublicKey, err)
	}
	sealed, err := backup.EncryptSessionDataWithPubkey(pub, map[string]any{"file": f})
	if err != nil {
		c.t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"encrypted_body": sealed})
	req, _ := http.NewRequest("POST", s.URL+"/_matrix/media_proxy/unstable"+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.cli.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

// Bob receives attachments in an end-to-end encrypted room and, before
// opening them, has the server's content scanner check them: the infected
// one is refused, the clean one served and decrypted by Bob.
func TestContentScannerChecksAttachmentsOfEncryptedRoom(t *testing.T) {
	d := clamdtest.Start(t)
	s := hstest.Start(t, func(c *config.Config) { c.ContentScanner, c.ClamdAddress = true, d.TCP })
	alice, bob := register(t, s, "alice"), register(t, s, "bob")
	roomID := alice.createEncryptedRoom(bob.cli.UserID)
	bob.join(roomID)
	alice.syncUntil("bob's join", alice.joined(roomID, bob.cli.UserID))

	infected := bob.receivedFile(roomID, alice.sendFile(roomID, "eicar.com", clamdtest.EICAR()))
	status, body := bob.scanRequest(s, "/scan_encrypted", infected)
	if status != 200 || !bytes.Contains(body, []byte(`"clean":false`)) {
		t.Fatalf("scan of the infected attachment: %d %s", status, body)
	}
	status, body = bob.scanRequest(s, "/download_encrypted", infected)
	if status != 403 || !bytes.Contains(body, []byte(`"reason":"MCS_MEDIA_NOT_CLEAN"`)) {
		t.Fatalf("download of the infected attachment: %d %s", status, body)
	}

	report := []byte("quarterly report, nothing to see")
	clean := bob.receivedFile(roomID, alice.sendFile(roomID, "report.txt", report))
	status, body = bob.scanRequest(s, "/scan_encrypted", clean)
	if status != 200 || !bytes.Contains(body, []byte(`"clean":true`)) {
		t.Fatalf("scan of the clean attachment: %d %s", status, body)
	}
	status, body = bob.scanRequest(s, "/download_encrypted", clean)
	if status != 200 {
		t.Fatalf("download of the clean attachment: %d %s", status, body)
	}
	got, err := clean.Decrypt(body)
	if err != nil || !bytes.Equal(got, report) {
		t.Fatalf("bob decrypts the download: %q %v", got, err)
	}
}
