package homeserver

import (
	"context"
	"encoding/json"
	"slices"

	"conclave/internal/changes"
	"conclave/internal/matrix"
	"conclave/internal/push"
	"conclave/internal/receipts"
	"conclave/internal/room"
	"conclave/internal/store"
	"conclave/internal/syncer"
)

// wire connects the services' hooks: who wakes /sync for what, and what a
// profile change or a deactivation does to rooms. It runs once in New.
func (hs *Homeserver) wire() {
	n := hs.Notifier
	ctx := context.Background()
	// With several processes on one database (hs.cluster non-nil), every
	// wake-up is also published to the others; typing and presence are
	// replicated instead (each process applies every change and wakes its
	// own long-polls), so their hooks wake locally only. See cluster.go.
	hs.cluster = newCluster(hs)
	c := hs.cluster
	wake := func(users ...string) {
		n.Wake(users...)
		c.wake(users)
	}
	localRoomWake := func(roomID string) {
		if users, err := hs.Rooms.JoinedMembers(ctx, roomID); err == nil {
			n.Wake(users...)
		}
	}
	// Every write is marked in the change tracker (hs.Changes, when this
	// process is the database's only writer) by the service that makes it,
	// before it commits; the hooks here only wake, after the commit.
	receiptsInRoom := func(roomID string) {
		if users, err := hs.Rooms.JoinedMembers(ctx, roomID); err == nil {
			wake(users...)
		}
	}
	hs.Rooms.Notify = func(notice room.Notice) {
		if len(notice.Members) > 0 {
			// Before the wake-up: a /sync woken by the join sees both.
			hs.recordFederatedJoins(notice)
			// Also before it: a client woken by another server's user's
			// join queries their keys, and must not be answered from a
			// list cached before they left (their devices may have
			// changed meanwhile, untold). A delete of the users' rows.
			if err := hs.Keys.DropRemoteLists(ctx, notice.Members); err != nil {
				hs.Log.Warn("dropping cached device lists", "err", err)
			}
		}
		n.Wake(notice.Users...)
		c.roomChanged(notice.RoomID, notice.Users)
		if len(notice.Members) > 0 {
			// Called under the room's lock: the writes are done by the
			// goroutine below; when it is behind, here (back-pressure
			// rather than a lost notice, which could leave a stale cache).
			select {
			case hs.memberNotices <- notice:
			default:
				hs.membershipsChanged(notice.Members)
				go hs.announceToNewServers(notice)
			}
		}
	}
	hs.memberNotices = make(chan room.Notice, 1024)
	go func() {
		for notice := range hs.memberNotices {
			hs.membershipsChanged(notice.Members)
			hs.announceToNewServers(notice)
		}
	}()
	hs.Typing.Notify = localRoomWake
	hs.Typing.IsJoined = hs.Rooms.IsJoined
	hs.Receipts.NotifyRoom = receiptsInRoom
	hs.Receipts.NotifyUser = func(userID string) { wake(userID) }
	hs.Receipts.IsJoined = hs.Rooms.IsJoined
	hs.AccountData.Notify = wake
	hs.presenceWork = make(chan func(), 1024)
	go func() {
		for f := range hs.presenceWork {
			f()
		}
	}()
	hs.Presence.Notify = func(userID string) { hs.presenceLater(func() { n.Wake(hs.coMembers(ctx, userID)...) }) }
	hs.Profiles.OnChange = func(ctx context.Context, userID string, p store.Profile) {
		if err := hs.Rooms.UpdateProfile(ctx, userID); err != nil {
			hs.Log.Warn("profile propagation", "user", userID, "err", err)
		}
	}
	hs.Accounts.OnDeactivate = func(ctx context.Context, userID string) {
		if err := hs.Rooms.LeaveAll(ctx, userID); err != nil {
			hs.Log.Warn("leaving rooms on deactivation", "user", userID, "err", err)
		}
	}
	// Device-list changes concern everyone sharing a room with the owner;
	// to-device messages only their recipients.
	deviceChange := func(ctx context.Context, owners ...string) (context.Context, func(wake bool)) {
		w := hs.Changes.Begin(hs.deviceListKeys(ctx, owners, false)...)
		return w.Context(ctx), func(woken bool) {
			ctx := context.WithoutCancel(ctx)
			w.Done(0, hs.deviceListKeys(ctx, owners, true)...)
			if woken {
				for _, u := range owners {
					wake(hs.sharingUsers(ctx, u)...)
				}
				// Other servers sharing a room with them are told too.
				if err := hs.Keys.AnnounceDevices(ctx, owners...); err != nil {
					hs.Log.Warn("announcing a device list change", "users", owners, "err", err)
				}
			}
		}
	}
	hs.Keys.DeviceChange = deviceChange
	hs.Accounts.DeviceChange = deviceChange
	hs.Keys.NotifyToDevice = wake
	hs.Push = push.New(hs.Store, hs.Store, hs.AccountData.PutInternal)
	// A local user joining an upgraded room keeps their notification
	// settings for the room it replaces (Client-Server API, "Room
	// upgrades"). Best effort: the join is committed already.
	hs.Rooms.OnUpgradedRoomJoin = func(userID, oldRoomID, newRoomID string) {
		if err := hs.Push.CopyRoomRules(ctx, userID, oldRoomID, newRoomID); err != nil {
			hs.Log.Warn("copying push rules to the upgraded room", "user", userID, "room", newRoomID, "err", err)
		}
		if err := hs.AccountData.CopyToUpgradedRoom(ctx, userID, oldRoomID, newRoomID); err != nil {
			hs.Log.Warn("copying tags and m.direct to the upgraded room", "user", userID, "room", newRoomID, "err", err)
		}
	}
	hs.Sync = syncer.New(hs.Store, hs.Rooms, n, syncer.Sources{
		AccountDataDefaults: func(userID string) map[string]json.RawMessage {
			return map[string]json.RawMessage{push.AccountDataType: push.DefaultContent(userID)}
		},
		Ignored:     hs.AccountData.IgnoredUsers,
		E2EE:        hs.Keys.SyncExtras,
		E2EECounts:  hs.Keys.KeyCounts,
		DeviceLists: hs.Keys.DeviceListChanges,
		Typing:      hs.Typing.Since,
		Receipts: func(viewer string, rows []store.Receipt) map[string]json.RawMessage {
			out := map[string]json.RawMessage{}
			for roomID, c := range receipts.ByRoom(rows, viewer) {
				if b, err := json.Marshal(c); err == nil {
					out[roomID] = b
				}
			}
			return out
		},
		PresenceOf: func(userIDs []string) []json.RawMessage {
			evs, _ := hs.Presence.Since(userIDs, 0)
			out := make([]json.RawMessage, 0, len(evs))
			for _, e := range evs {
				if b, err := json.Marshal(e); err == nil {
					out = append(out, b)
				}
			}
			return out
		},
		Presence: func(ctx context.Context, userID string, serial int64) ([]json.RawMessage, int64, error) {
			if cur := hs.Presence.Serial(); cur == serial && serial != 0 {
				return nil, cur, nil // nothing changed: skip gathering room members
			}
			evs, cur := hs.Presence.Since(hs.sharingUsers(ctx, userID), serial)
			out := make([]json.RawMessage, 0, len(evs))
			for _, e := range evs {
				if b, err := json.Marshal(e); err == nil {
					out = append(out, b)
				}
			}
			return out, cur, nil
		},
	})
}

// deviceListKeys are the change tracker's keys for a change of the owners'
// devices or keys: each owner's own, their key counts, every room they are
// joined to (everyone there must refetch their keys), and the "any room"
// key that keeps readers looking while the write is in flight — a room the
// owner joins meanwhile is only found when the write is recorded, by
// computing the keys again (committed). If the owners' rooms cannot be read
// then, the tracker forgets what it knows (every /sync then asks the store
// once): the write is committed, so the new floor is above it.
func (hs *Homeserver) deviceListKeys(ctx context.Context, owners []string, committed bool) []changes.Key {
	if hs.Changes == nil {
		return nil
	}
	keys := []changes.Key{{Kind: changes.DeviceLists}}
	for _, u := range owners {
		keys = append(keys, changes.Key{Kind: changes.UserDevices, Subject: u}, changes.Key{Kind: changes.KeyCounts, Subject: u})
		ms, err := hs.Store.UserMemberships(ctx, u)
		if err != nil {
			if committed {
				hs.Log.Warn("device list change: reading memberships", "user", u, "err", err)
				hs.Changes.ForgetAll()
			}
			continue
		}
		for _, m := range ms {
			if m.Membership == "join" {
				keys = append(keys, changes.Key{Kind: changes.DeviceLists, Subject: m.RoomID})
			}
		}
	}
	return keys
}

// presenceLater runs a presence change's fan-out after the request that
// made it: finding who shares a room with the user loads every room of the
// user, which a user coming online after a restart (their first request,
// e.g. a sliding sync) must not wait for. The change itself is recorded at
// once, so syncs see it; only the wake-ups and federation follow, in order.
// A full queue runs it here.
func (hs *Homeserver) presenceLater(f func()) {
	select {
	case hs.presenceWork <- f:
	default:
		f()
	}
}

// coMembers is sharingUsers from one store query: for a presence change's
// fan-out, which would otherwise load every room of a user coming online
// after a restart.
func (hs *Homeserver) coMembers(ctx context.Context, userID string) []string {
	users, err := hs.Store.JoinedCoMembers(ctx, userID)
	if err != nil {
		return hs.sharingUsers(ctx, userID)
	}
	if !slices.Contains(users, userID) {
		users = append(users, userID)
	}
	return users
}

// sharingUsers lists the user and everyone joined to a room the user is
// joined to, from the room service's in-memory state.
func (hs *Homeserver) sharingUsers(ctx context.Context, userID string) []string {
	ms, err := hs.Store.UserMemberships(ctx, userID)
	if err != nil {
		return []string{userID}
	}
	seen := map[string]bool{userID: true}
	out := []string{userID}
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		users, err := hs.Rooms.JoinedMembers(ctx, m.RoomID)
		if err != nil {
			continue
		}
		for _, u := range users {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// membershipsChanged keeps the cached device lists of other servers' users
// true after membership changes: a remote user whose membership changed
// may have changed devices while we were not told (they left and came
// back), and nobody tells us of users no local user shares a room with any
// more. Their lists are fetched again when next queried. (Servers that
// start sharing a room with a local user are sent the user's devices by
// announceToNewServers.)
func (hs *Homeserver) membershipsChanged(members []string) {
	ctx := context.Background()
	// (The changed members' own lists were dropped before the wake-up, in
	// the room notice hook.)
	for _, u := range members {
		if matrix.ServerOf(u) == hs.Config.ServerName {
			if err := hs.Keys.DropUnshared(ctx); err != nil {
				hs.Log.Warn("dropping cached device lists", "err", err)
			}
			return
		}
	}
}

// recordFederatedJoins records a device list change for local users of
// notice.Members joined to a room with users of other servers: their own
// other devices and room-mates refetch, as Synapse does (Complement's
// TestDeviceListsUpdateOverFederation expects the joiner in their own
// device_lists.changed with the join). Under the room's lock: store reads
// and the change tracker only (nothing that locks a room). A member event
// that is not a new join (a profile change) records one too, which costs
// the clients a key query.
func (hs *Homeserver) recordFederatedJoins(notice room.Notice) {
	if hs.Keys.Fed.Remote == nil {
		return
	}
	remote := false
	for _, u := range notice.Users {
		if matrix.ServerOf(u) != hs.Config.ServerName {
			remote = true
			break
		}
	}
	if !remote {
		return
	}
	ctx := context.Background()
	var joined []string
	for _, u := range notice.Members {
		if matrix.ServerOf(u) != hs.Config.ServerName {
			continue
		}
		ms, err := hs.Store.UserMemberships(ctx, u)
		if err != nil {
			continue
		}
		for _, m := range ms {
			if m.RoomID == notice.RoomID && m.Membership == "join" {
				joined = append(joined, u)
				break
			}
		}
	}
	if len(joined) == 0 {
		return
	}
	w := hs.Changes.Begin(hs.deviceListKeys(ctx, joined, false)...)
	err := hs.Store.RecordDeviceListChanges(w.Context(ctx), joined)
	w.Done(0, hs.deviceListKeys(ctx, joined, true)...)
	if err != nil {
		hs.Log.Warn("recording a device list change on a join", "users", joined, "err", err)
	}
}

// announceToNewServers sends the devices of local users who joined
// notice.RoomID to the room's servers that shared no other room with them
// (keys.Service.AnnounceTo). Not under the room's lock: it reads rooms'
// members. A member event that is not a new join (a profile change)
// announces again to the servers only this room shares with the user:
// a few EDUs that receivers skip (seen already, or a chain start for a
// list they do not hold).
func (hs *Homeserver) announceToNewServers(notice room.Notice) {
	if hs.Keys.Fed.Remote == nil {
		return
	}
	remote := false
	for _, u := range notice.Users {
		if matrix.ServerOf(u) != hs.Config.ServerName {
			remote = true
			break
		}
	}
	if !remote {
		return
	}
	ctx := context.Background()
	for _, u := range notice.Members {
		if matrix.ServerOf(u) != hs.Config.ServerName {
			continue
		}
		ms, err := hs.Store.UserMemberships(ctx, u)
		if err != nil {
			continue
		}
		joinedHere := false
		var others []string
		for _, m := range ms {
			if m.Membership != "join" {
				continue
			}
			if m.RoomID == notice.RoomID {
				joinedHere = true
			} else {
				others = append(others, m.RoomID)
			}
		}
		if !joinedHere {
			continue
		}
		servers, err := hs.Rooms.ServersInRoom(ctx, notice.RoomID)
		if err != nil {
			continue
		}
		servers = slices.DeleteFunc(servers, func(s string) bool { return s == hs.Config.ServerName })
		for _, r := range others {
			if len(servers) == 0 {
				break
			}
			had, err := hs.Rooms.ServersInRoom(ctx, r)
			if err != nil {
				continue
			}
			servers = slices.DeleteFunc(servers, func(s string) bool { return slices.Contains(had, s) })
		}
		if err := hs.Keys.AnnounceTo(ctx, u, servers); err != nil {
			hs.Log.Warn("announcing devices to servers newly sharing a room", "user", u, "room", notice.RoomID, "err", err)
		}
	}
}
