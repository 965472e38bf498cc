package clientapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"conclave/internal/config"
	"conclave/internal/homeserver/hstest"
)

// An e-mail pusher mails what stayed unread for email_notification_delay:
// room names and senders, no content; what the user read meanwhile is left
// out, and nothing is mailed twice.
func TestEmailPusherMailsMissedMessages(t *testing.T) {
	s, smtp := emailServer(t, func(c *config.Config) { c.EmailNotificationDelay = config.Duration{Duration: 1500 * time.Millisecond} })
	alice := registerByEmail(t, s, smtp, "alice@ministry.fr", "Pass-word-1")
	bob := registerByEmail(t, s, smtp, "bob@ministry.fr", "Pass-word-2")
	set := "/_matrix/client/v3/pushers/set"
	emailPusher := func(key string) map[string]any {
		return map[string]any{"kind": "email", "app_id": "m.email", "pushkey": key, "app_display_name": "Email", "device_display_name": key, "lang": "fr", "data": map[string]any{}}
	}
	// Only one of one's own addresses.
	expectErr(t, s.Do(t, "POST", set, bob, emailPusher("alice@ministry.fr")), http.StatusBadRequest, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "POST", set, bob, emailPusher("nobody@ministry.fr")), http.StatusBadRequest, "M_INVALID_PARAM")
	s.MustOK(t, "POST", set, bob, emailPusher("bob@ministry.fr"))
	r := s.MustOK(t, "GET", "/_matrix/client/v3/pushers", bob, nil)
	if !strings.Contains(string(r.Body), `"kind":"email"`) {
		t.Fatalf("pushers: %s", r.Body)
	}

	roomID := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice, map[string]any{"name": "Budget 2027", "invite": []string{"@bob-ministry.fr:localhost"}}).Str("room_id")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/join", roomID), bob, map[string]any{})
	send := func(body string) string {
		return s.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, body), alice, map[string]string{"msgtype": "m.text", "body": body}).Str("event_id")
	}
	// Read at once: never mailed.
	read := send("secret figures one")
	s.MustOK(t, "POST", hstest.Path("/rooms/%s/receipt/m.read/%s", roomID, read), bob, map[string]any{})
	send("secret figures two")
	send("secret figures three")
	m := smtp.Wait(t, "bob@ministry.fr", 2) // the first was the registration's
	if m.Subject != "2 unread messages on localhost" {
		t.Errorf("subject %q", m.Subject)
	}
	if !strings.Contains(m.Text, "- 2 in Budget 2027 (from alice@ministry.fr)") && !strings.Contains(m.Text, "- 2 in Budget 2027 (from Alice [Ministry])") {
		t.Errorf("mail:\n%s", m.Text)
	}
	if strings.Contains(m.Text, "secret") {
		t.Errorf("the mail gives the messages away:\n%s", m.Text)
	}
	// One more: a second mail for it alone.
	send("secret figures four")
	m = smtp.Wait(t, "bob@ministry.fr", 3)
	if m.Subject != "1 unread message on localhost" {
		t.Errorf("second subject %q", m.Subject)
	}
	if n := smtp.Count("alice@ministry.fr"); n != 1 {
		t.Errorf("alice got %d mails, want 1 (registration)", n)
	}
}
