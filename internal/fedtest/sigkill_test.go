package fedtest

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"conclave/internal/homeserver/hstest"
)

// A sending server SIGKILLed with a full queue delivers everything it
// acknowledged after it restarts: the queue is in its database, not in its
// memory. The sender is a real conclave process; the receiver was down
// meanwhile.
func TestSenderKilledWithFullQueueDeliversAfterRestart(t *testing.T) {
	k := startKillable(t, false)
	b := k.b
	a := k.start()
	alice := a.Register(t, "alice")
	bob := b.Register(t, "bob")
	roomID := a.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{"preset": "public_chat"}).Str("room_id")
	b.MustOK(t, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(a.ServerName), bob.Token, map[string]any{})

	b.Stop()
	const n = 120
	for i := 0; i < n; i++ {
		a.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/%s", roomID, fmt.Sprint("q", i)), alice.Token, map[string]any{"msgtype": "m.text", "body": fmt.Sprint("queued ", i)})
	}
	a.Proc.Cmd.Process.Kill() // SIGKILL: nothing is flushed
	a.Proc.Cmd.Wait()

	b = b.Restart(t)
	a = k.start()
	// Bob talks to alice's server again, which ends its back-off for his.
	b.MustOK(t, "PUT", hstest.Path("/rooms/%s/send/m.room.message/back", roomID), bob.Token, map[string]any{"msgtype": "m.text", "body": "back"})
	waitBodies(t, b, bob, roomID, "queued ", n, 60*time.Second)
}
