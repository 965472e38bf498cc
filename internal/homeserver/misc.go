package homeserver

import (
	"context"

	"conclave/internal/accountdata"
	"conclave/internal/presence"
	"conclave/internal/profile"
	"conclave/internal/receipts"
	"conclave/internal/typing"
)

// newMiscServices builds the profile, account data, typing, receipts and
// presence services with store-backed defaults for their membership hooks.
// The room service and /sync replace or add hooks after this:
//   - Profiles.OnChange: send updated m.room.member events;
//   - AccountData.Notify, Receipts.NotifyRoom/NotifyUser, Typing.Notify,
//     Presence.Notify: wake /sync;
//   - Typing.IsJoined, Receipts.IsJoined, Presence.Visible: may be pointed at
//     the room service's in-memory state instead of the store.
func (hs *Homeserver) newMiscServices() {
	db := hs.Store
	isJoined := func(ctx context.Context, roomID, userID string) (bool, error) {
		m, err := db.MembershipOf(ctx, roomID, userID)
		return m == "join", err
	}
	hs.Profiles = profile.New(db, hs.Config.ServerName)
	hs.AccountData = accountdata.New(db)
	hs.Typing = typing.New()
	hs.Typing.IsJoined = isJoined
	hs.Receipts = receipts.New(db, hs.AccountData)
	hs.Receipts.IsJoined = isJoined
	hs.Presence = presence.New()
	hs.Presence.Visible = db.SharesRoom
}
