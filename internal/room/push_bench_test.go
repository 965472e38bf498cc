package room_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"conclave/internal/changes"
	"conclave/internal/event"
	"conclave/internal/push"
	"conclave/internal/room"
	"conclave/internal/store"
)

// BenchmarkSendMessageLargeRoom measures the write path of one message in
// a room of 2,000 local members, without push rules and with every
// member's rules evaluated (their defaults plus one keyword each) and
// their notification rows written in the event's transaction.
func BenchmarkSendMessageLargeRoom(b *testing.B) {
	for _, withPush := range []bool{false, true} {
		b.Run("push="+strconv.FormatBool(withPush), func(b *testing.B) {
			ctx := context.Background()
			svc, db := newService(b)
			const members = 2000
			roomID, err := svc.CreateRoom(ctx, &room.CreateRequest{Creator: "@alice:bench.example", Preset: "public_chat"})
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < members-1; i++ {
				u := fmt.Sprintf("@user%d:bench.example", i)
				if _, err := svc.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: u, Target: u, Membership: "join"}); err != nil {
					b.Fatal(err)
				}
			}
			if withPush {
				tracker := changes.New(func() int64 { p, _ := db.MaxStreamPos(ctx); return p })
				ps := push.New(db, db, func(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
					_, err := db.PutAccountData(ctx, userID, roomID, typ, content)
					return err
				})
				for i := 0; i < members-1; i++ {
					kw := fmt.Sprintf("keyword%d", i)
					if err := ps.PutRule(ctx, fmt.Sprintf("@user%d:bench.example", i), "content", kw, &push.NewRule{Pattern: &kw, Actions: []json.RawMessage{json.RawMessage(`"notify"`)}}, "", ""); err != nil {
						b.Fatal(err)
					}
				}
				bulk := push.NewBulk(ps, func(u string) bool { return strings.HasSuffix(u, ":bench.example") }, tracker, nil)
				svc.PushActions = func(ctx context.Context, v room.PushView, pdu *event.PDU, membership string) []store.PushAction {
					return bulk.Actions(ctx, v, &push.EventInfo{Sender: pdu.Sender, Type: pdu.Type, StateKey: pdu.StateKey, Membership: membership, JSON: pdu.Raw})
				}
			}
			content := json.RawMessage(`{"msgtype":"m.text","body":"The quick brown fox jumps over the lazy dog, keyword7"}`)
			send := func(i int) {
				if _, err := svc.Send(ctx, &room.SendRequest{RoomID: roomID, Sender: "@alice:bench.example", DeviceID: "DEV", TxnID: strconv.Itoa(i), Type: "m.room.message", Content: content}); err != nil {
					b.Fatal(err)
				}
			}
			send(-1) // rules loaded once
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				send(i)
			}
		})
	}
}
