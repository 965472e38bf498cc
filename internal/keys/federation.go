package keys

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"sync"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Keys across servers (Server-Server API, "End-to-End Encryption" and
// "Device Management"): this server announces its users' device lists in
// m.device_list_update and m.signing_key_update EDUs, caches other servers'
// users' lists when a local user shares a room with them, and asks other
// servers for keys its clients query or claim.

// Bounds on what other servers send and on the fan-out.
const (
	// DefaultRemoteTimeout is how long a /keys/query or /keys/claim waits
	// for other servers when the client gives no timeout (the spec's
	// default for the request's timeout field).
	DefaultRemoteTimeout = 10 * time.Second
	// MaxRemoteDevices bounds one user's device list from another server.
	MaxRemoteDevices = 10000
	// resyncParallel bounds the resyncs of remote lists running at once.
	resyncParallel = 4
	// maxParallelServers bounds the servers one query or claim asks at once.
	maxParallelServers = 32
)

// Remote is how the keys service reaches other servers (internal/federation
// implements it).
type Remote interface {
	// EnqueueEDU queues an EDU for servers (durable once it returns).
	EnqueueEDU(ctx context.Context, dests []string, eduType string, content []byte) error
	// EDUEntry is an EDU for servers as a queue entry that a store write
	// commits with the change it belongs to (ok false: nothing to queue);
	// Committed starts its delivery after that write committed.
	EDUEntry(dests []string, eduType string, content []byte) (e store.FedEnqueue, ok bool, err error)
	Committed(dests []string)
	// UserDevices asks GET /_matrix/federation/v1/user/devices/{userId}.
	UserDevices(ctx context.Context, server, userID string) (json.RawMessage, error)
	// QueryKeys asks POST /_matrix/federation/v1/user/keys/query.
	QueryKeys(ctx context.Context, server string, deviceKeys map[string][]string) (json.RawMessage, error)
	// ClaimKeys asks POST /_matrix/federation/v1/user/keys/claim.
	ClaimKeys(ctx context.Context, server string, oneTimeKeys map[string]map[string]string) (json.RawMessage, error)
}

// Federation connects the service to other servers; set every field before
// serving (a nil Remote: no federation).
type Federation struct {
	Remote Remote
	// ServersSharing lists the other servers with a user joined to a room
	// userID is joined to: they get userID's device list updates.
	ServersSharing func(ctx context.Context, userID string) []string
	// SharedWithLocal reports whether a local user shares a joined room
	// with the remote userID: only then is their device list cached.
	SharedWithLocal func(ctx context.Context, userID string) bool
}

type fedState struct {
	mu       sync.Mutex
	announce map[string]*sync.Mutex // local user → serialises announcements
	failed   map[string]bool        // local users whose last announcement failed
	resyncs  map[string]bool        // remote user → resync running; true: fetch again
	users    map[string]*userMu     // remote user → userLock
	sem      chan struct{}
}

type userMu struct {
	sync.Mutex
	n int // holders and waiters
}

func (s *Service) fed() *fedState {
	s.fedOnce.Do(func() {
		s.fedSt = &fedState{announce: map[string]*sync.Mutex{}, failed: map[string]bool{}, resyncs: map[string]bool{}, users: map[string]*userMu{}, sem: make(chan struct{}, resyncParallel)}
	})
	return s.fedSt
}

func (s *Service) federated() bool { return s.Fed.Remote != nil }

// --- outbound device list updates ---------------------------------------------

// deviceUpdate is the content of m.device_list_update (spec: "m.device_list_update").
type deviceUpdate struct {
	UserID      string          `json:"user_id"`
	DeviceID    string          `json:"device_id"`
	DisplayName *string         `json:"device_display_name,omitempty"`
	StreamID    int64           `json:"stream_id"`
	PrevID      []int64         `json:"prev_id"`
	Deleted     bool            `json:"deleted,omitempty"`
	Keys        json.RawMessage `json:"keys,omitempty"`
}

// Pseudo device IDs under which the announced cross-signing keys are kept
// (a device ID cannot hold NUL).
const (
	outMaster = "\x00master"
	outSSK    = "\x00self_signing"
)

func hashOf(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

// localLists is what other servers are told of a local user: devices with
// their keys (the user's own signatures merged) and the master and
// self-signing keys; never the user-signing key.
func (s *Service) localLists(ctx context.Context, userID string) ([]store.DeviceListEntry, map[string]json.RawMessage, error) {
	devs, err := s.store.LocalDeviceList(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	sigs, err := s.store.KeySignatures(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	byTarget := map[string][]store.KeySignature{}
	for _, sg := range sigs {
		if sg.SignerUserID == userID {
			byTarget[sg.TargetKeyID] = append(byTarget[sg.TargetKeyID], sg)
		}
	}
	for i := range devs {
		if devs[i].Keys != nil {
			if devs[i].Keys, err = mergeKey(devs[i].Keys, byTarget[devs[i].DeviceID], nil); err != nil {
				return nil, nil, err
			}
		}
	}
	csk, err := s.store.CrossSigningKeys(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	cs := map[string]json.RawMessage{}
	for _, typ := range []string{"master", "self_signing"} {
		if k, ok := csk[typ]; ok {
			if cs[typ], err = mergeKey(k.JSON, byTarget[k.PubKey], nil); err != nil {
				return nil, nil, err
			}
		}
	}
	return devs, cs, nil
}

// AnnounceDevices tells the servers sharing a room with each local user
// what changed in their device list since the last announcement: one
// m.device_list_update per device added, removed, renamed or re-keyed, with
// stream_id/prev_id chained per user, and m.signing_key_update when the
// master or self-signing key changed. Called after every committed change
// (the homeserver's DeviceChange hook); errors are logged by the caller.
func (s *Service) AnnounceDevices(ctx context.Context, userIDs ...string) error {
	if !s.federated() {
		return nil
	}
	var errs []error
	for _, u := range userIDs {
		if s.isLocal(u) {
			errs = append(errs, s.announceNoting(ctx, u))
		}
	}
	return errors.Join(errs...)
}

// announceNoting is announce, remembering the users whose announcement
// failed for RetryFailedAnnouncements.
func (s *Service) announceNoting(ctx context.Context, userID string) error {
	err := s.announce(ctx, userID)
	f := s.fed()
	f.mu.Lock()
	if err != nil {
		f.failed[userID] = true
	} else {
		delete(f.failed, userID)
	}
	f.mu.Unlock()
	return err
}

// RetryFailedAnnouncements announces again the local users whose
// announcement failed (the store failed while it was queued or recorded):
// their change is committed, and would otherwise wait for their next
// change or the next start (AnnouncePending) to reach other servers.
// Called periodically; a user whose announcement fails again stays.
func (s *Service) RetryFailedAnnouncements(ctx context.Context) error {
	if !s.federated() {
		return nil
	}
	f := s.fed()
	f.mu.Lock()
	users := make([]string, 0, len(f.failed))
	for u := range f.failed {
		users = append(users, u)
	}
	f.mu.Unlock()
	sort.Strings(users)
	var errs []error
	for _, u := range users {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, s.announceNoting(ctx, u))
	}
	return errors.Join(errs...)
}

func (s *Service) announce(ctx context.Context, userID string) error {
	f := s.fed()
	f.mu.Lock()
	m := f.announce[userID]
	if m == nil {
		m = &sync.Mutex{}
		f.announce[userID] = m
	}
	f.mu.Unlock()
	m.Lock()
	defer m.Unlock()

	// Read before the lists: a change committed after this is above it, and
	// announced by its own call (or at the next start).
	pos, err := s.store.LastDeviceListChange(ctx, userID)
	if err != nil {
		return err
	}
	devs, cs, err := s.localLists(ctx, userID)
	if err != nil {
		return err
	}
	sent, last, err := s.store.DeviceListOutbound(ctx, userID)
	if err != nil {
		return err
	}
	now := map[string]string{}
	var updates []deviceUpdate
	for _, d := range devs {
		name := []byte{}
		if d.DisplayName != nil {
			name = []byte("n" + *d.DisplayName)
		}
		h := hashOf([]byte(d.DeviceID), name, d.Keys)
		now[d.DeviceID] = h
		if sent[d.DeviceID] != h {
			updates = append(updates, deviceUpdate{UserID: userID, DeviceID: d.DeviceID, DisplayName: d.DisplayName, Keys: d.Keys})
		}
	}
	var gone []string
	for id := range sent {
		if _, ok := now[id]; !ok && id != outMaster && id != outSSK {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		updates = append(updates, deviceUpdate{UserID: userID, DeviceID: id, Deleted: true})
		now[id] = ""
	}
	signing := false
	for typ, pseudo := range map[string]string{"master": outMaster, "self_signing": outSSK} {
		h := ""
		if k, ok := cs[typ]; ok {
			h = hashOf(k)
		}
		if sent[pseudo] != h {
			signing = true
		}
		now[pseudo] = h
	}
	if len(updates) == 0 && !signing {
		return s.store.SetDeviceListOutbound(ctx, userID, nil, last, pos)
	}
	changed := map[string]string{}
	for id, h := range now {
		if sent[id] != h {
			changed[id] = h
		}
	}
	var dests []string
	if s.Fed.ServersSharing != nil {
		dests = s.Fed.ServersSharing(ctx, userID)
	}
	for i := range updates {
		updates[i].PrevID = []int64{}
		if last > 0 {
			updates[i].PrevID = []int64{last}
		}
		last++
		updates[i].StreamID = last
	}
	if len(dests) > 0 {
		ctx := context.WithoutCancel(ctx)
		for _, u := range updates {
			b, err := json.Marshal(u)
			if err != nil {
				return err
			}
			if err := s.Fed.Remote.EnqueueEDU(ctx, dests, "m.device_list_update", b); err != nil {
				return err
			}
		}
		if signing {
			c := map[string]any{"user_id": userID}
			if k, ok := cs["master"]; ok {
				c["master_key"] = k
			}
			if k, ok := cs["self_signing"]; ok {
				c["self_signing_key"] = k
			}
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := s.Fed.Remote.EnqueueEDU(ctx, dests, "m.signing_key_update", b); err != nil {
				return err
			}
		}
	}
	// Recorded after queueing: a crash in between sends the same updates
	// again, which receivers skip by stream_id.
	return s.store.SetDeviceListOutbound(ctx, userID, changed, last, pos)
}

// AnnounceTo sends userID's devices and cross-signing keys to servers that
// have just started sharing a room with them (a local user joined a room
// with servers that were not receiving their updates). The spec's Server-
// Server API, "Device Management": updates "must be sent ... when that user
// joins a room which contains servers which are not already receiving
// updates for that user's device list". Each device goes out at the
// user's current stream ID with no prev_id: it starts the chain for the new
// servers without moving it for the others, so a server that already holds
// the list skips it as seen, and one without it learns nothing new to its
// clients (they query a user when they start sharing a room with them).
func (s *Service) AnnounceTo(ctx context.Context, userID string, servers []string) error {
	if !s.federated() || !s.isLocal(userID) || len(servers) == 0 {
		return nil
	}
	f := s.fed()
	f.mu.Lock()
	m := f.announce[userID]
	if m == nil {
		m = &sync.Mutex{}
		f.announce[userID] = m
	}
	f.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	devs, cs, err := s.localLists(ctx, userID)
	if err != nil {
		return err
	}
	_, last, err := s.store.DeviceListOutbound(ctx, userID)
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	for _, d := range devs {
		b, err := json.Marshal(deviceUpdate{UserID: userID, DeviceID: d.DeviceID, DisplayName: d.DisplayName, Keys: d.Keys, StreamID: last, PrevID: []int64{}})
		if err != nil {
			return err
		}
		if err := s.Fed.Remote.EnqueueEDU(ctx, servers, "m.device_list_update", b); err != nil {
			return err
		}
	}
	if len(cs) > 0 {
		c := map[string]any{"user_id": userID}
		if k, ok := cs["master"]; ok {
			c["master_key"] = k
		}
		if k, ok := cs["self_signing"]; ok {
			c["self_signing_key"] = k
		}
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		return s.Fed.Remote.EnqueueEDU(ctx, servers, "m.signing_key_update", b)
	}
	return nil
}

// AnnouncePending announces the device lists of local users changed since
// their last announcement: what a crash between a change's commit and its
// announcement left out. Run once at start.
func (s *Service) AnnouncePending(ctx context.Context) error {
	if !s.federated() {
		return nil
	}
	users, err := s.store.UnannouncedDeviceLists(ctx)
	if err != nil {
		return err
	}
	// One failure does not hold back the others; RetryFailedAnnouncements
	// tries it again.
	var errs []error
	for _, u := range users {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, s.announceNoting(ctx, u))
	}
	return errors.Join(errs...)
}

// UserDevices is the answer of GET /_matrix/federation/v1/user/devices/{userId}
// for a local user.
func (s *Service) UserDevices(ctx context.Context, userID string) (map[string]any, error) {
	if !matrix.ValidUserID(userID) || !s.isLocal(userID) {
		return nil, matrix.InvalidParam("%s is not a user of this server", userID)
	}
	devs, cs, err := s.localLists(ctx, userID)
	if err != nil {
		return nil, err
	}
	_, last, err := s.store.DeviceListOutbound(ctx, userID)
	if err != nil {
		return nil, err
	}
	list := make([]map[string]any, 0, len(devs))
	for _, d := range devs {
		e := map[string]any{"device_id": d.DeviceID}
		if d.Keys != nil {
			e["keys"] = d.Keys
		}
		if d.DisplayName != nil {
			e["device_display_name"] = *d.DisplayName
		}
		list = append(list, e)
	}
	out := map[string]any{"user_id": userID, "stream_id": last, "devices": list}
	if k, ok := cs["master"]; ok {
		out["master_key"] = k
	}
	if k, ok := cs["self_signing"]; ok {
		out["self_signing_key"] = k
	}
	return out, nil
}

// --- inbound updates ----------------------------------------------------------

// checkRemoteKeys checks the shape of device keys another server sent for
// userID's deviceID.
func checkRemoteKeys(raw json.RawMessage, userID, deviceID string) (json.RawMessage, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true
	}
	var dk deviceKeysBody
	if raw[0] != '{' || json.Unmarshal(raw, &dk) != nil || dk.UserID == nil || *dk.UserID != userID || dk.DeviceID == nil || *dk.DeviceID != deviceID {
		return nil, false
	}
	c, err := withoutUnsigned(raw)
	return c, err == nil
}

func checkRemoteCrossSigning(raw json.RawMessage, userID, typ string) (json.RawMessage, bool) {
	k, err := parseCrossSigningKey(userID, typ, raw)
	if err != nil {
		return nil, false
	}
	return k.JSON, true
}

// HandleDeviceListUpdate takes an m.device_list_update from origin. A user
// whose list is cached gets the update applied when it follows what the
// cache holds (every prev_id seen), else their list is fetched again; a
// user whose list is not cached is only marked changed (local clients
// then query, which reaches their server).
func (s *Service) HandleDeviceListUpdate(ctx context.Context, origin string, content json.RawMessage) {
	var u struct {
		UserID      string          `json:"user_id"`
		DeviceID    string          `json:"device_id"`
		DisplayName *string         `json:"device_display_name"`
		StreamID    int64           `json:"stream_id"`
		PrevID      []int64         `json:"prev_id"`
		Deleted     bool            `json:"deleted"`
		Keys        json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(content, &u) != nil || !matrix.ValidUserID(u.UserID) || matrix.ServerOf(u.UserID) != origin || u.DeviceID == "" || len(u.DeviceID) > 255 || len(u.PrevID) > 100 {
		return
	}
	keys, ok := checkRemoteKeys(u.Keys, u.UserID, u.DeviceID)
	if !ok {
		return
	}
	if s.Fed.SharedWithLocal == nil || !s.Fed.SharedWithLocal(ctx, u.UserID) {
		// Nobody here shares a room with them: nothing to keep or tell.
		_ = s.store.DropRemoteDeviceLists(ctx, []string{u.UserID})
		return
	}
	unlock := s.userLock(u.UserID)
	defer unlock()
	_, _, cur, cached, err := s.store.RemoteDeviceList(ctx, u.UserID)
	if err != nil {
		wctx, done := s.deviceChange(ctx, u.UserID)
		s.forgetMissedUpdate(wctx, u.UserID, done)
		return
	}
	if cached && u.StreamID <= cur {
		return // seen already
	}
	if !cached && len(u.PrevID) == 0 {
		// The start of a chain (a server announcing the user because we
		// now share a room, see AnnounceTo) for a list not cached here:
		// local clients learnt of the user when they started sharing the
		// room, and query; marking the user changed again would only tell
		// them twice. A resync under way fetches again.
		s.markResyncDirty(u.UserID)
		return
	}
	follows := cached
	for _, p := range u.PrevID {
		follows = follows && p <= cur
	}
	if cached && !follows {
		// A gap: we missed updates, so the cache cannot be trusted.
		s.markResyncDirty(u.UserID)
		s.resync(ctx, u.UserID)
		return
	}
	wctx, done := s.deviceChange(ctx, u.UserID)
	applied, err := s.store.UpdateRemoteDevice(wctx, u.UserID, u.StreamID, store.DeviceListEntry{DeviceID: u.DeviceID, DisplayName: u.DisplayName, Keys: keys}, u.Deleted)
	if err != nil {
		s.forgetMissedUpdate(wctx, u.UserID, done)
		return
	}
	done(true)
	if !applied {
		s.markResyncDirty(u.UserID)
	}
}

// forgetMissedUpdate, under the user's lock, after an update of a remote
// user's cached list could not be stored: the cache missed it, and nothing
// would tell (the sender has its answer; a gap shows only at the user's
// next update), so it is dropped — the next query fetches the list from the
// user's server — and local clients are told the user changed, so that
// they query. wctx and done are the write's deviceChange.
func (s *Service) forgetMissedUpdate(wctx context.Context, userID string, done func(bool)) {
	s.markResyncDirty(userID)
	wctx = context.WithoutCancel(wctx)
	err := s.store.DropRemoteDeviceLists(wctx, []string{userID})
	if err == nil {
		err = s.store.RecordDeviceListChanges(wctx, []string{userID})
	}
	done(err == nil)
}

// HandleSigningKeyUpdate takes an m.signing_key_update from origin.
func (s *Service) HandleSigningKeyUpdate(ctx context.Context, origin string, content json.RawMessage) {
	var u struct {
		UserID         string          `json:"user_id"`
		MasterKey      json.RawMessage `json:"master_key"`
		SelfSigningKey json.RawMessage `json:"self_signing_key"`
	}
	if json.Unmarshal(content, &u) != nil || !matrix.ValidUserID(u.UserID) || matrix.ServerOf(u.UserID) != origin {
		return
	}
	if s.Fed.SharedWithLocal == nil || !s.Fed.SharedWithLocal(ctx, u.UserID) {
		_ = s.store.DropRemoteDeviceLists(ctx, []string{u.UserID})
		return
	}
	keys := map[string]json.RawMessage{}
	for typ, raw := range map[string]json.RawMessage{"master": u.MasterKey, "self_signing": u.SelfSigningKey} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		k, ok := checkRemoteCrossSigning(raw, u.UserID, typ)
		if !ok {
			return
		}
		keys[typ] = k
	}
	unlock := s.userLock(u.UserID)
	defer unlock()
	wctx, done := s.deviceChange(ctx, u.UserID)
	if err := s.store.PutRemoteCrossSigningKeys(wctx, u.UserID, keys); err != nil {
		s.forgetMissedUpdate(wctx, u.UserID, done)
		return
	}
	done(true)
	s.markResyncDirty(u.UserID)
}

// userLock serialises what changes one remote user's cached list: an
// update taken from an EDU, and a resync's write.
func (s *Service) userLock(userID string) func() {
	f := s.fed()
	f.mu.Lock()
	m := f.users[userID]
	if m == nil {
		m = &userMu{}
		f.users[userID] = m
	}
	m.n++
	f.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		f.mu.Lock()
		if m.n--; m.n == 0 {
			delete(f.users, userID)
		}
		f.mu.Unlock()
	}
}

// markResyncDirty, under the user's lock, makes a running resync of userID
// fetch again instead of writing: what it fetched may predate the update
// just recorded.
func (s *Service) markResyncDirty(userID string) {
	f := s.fed()
	f.mu.Lock()
	if _, running := f.resyncs[userID]; running {
		f.resyncs[userID] = true
	}
	f.mu.Unlock()
}

// resync fetches a remote user's whole device list again, in the
// background (one at a time per user, resyncParallel at once).
func (s *Service) resync(ctx context.Context, userID string) {
	f := s.fed()
	f.mu.Lock()
	if _, running := f.resyncs[userID]; running {
		f.resyncs[userID] = true
		f.mu.Unlock()
		return
	}
	f.resyncs[userID] = false
	f.mu.Unlock()
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer func() {
			f.mu.Lock()
			delete(f.resyncs, userID)
			f.mu.Unlock()
		}()
		for range 5 {
			f.sem <- struct{}{}
			again, _ := s.resyncOnce(ctx, userID)
			<-f.sem
			if !again {
				return
			}
		}
	}()
}

// Resync fetches a remote user's device list from their server and caches
// it (or drops the cache when nobody here shares a room with them).
func (s *Service) Resync(ctx context.Context, userID string) error {
	_, err := s.resyncOnce(ctx, userID)
	return err
}

// resyncOnce is one resync; again is true when an update arrived while
// the list was being fetched (nothing was written: fetch again).
func (s *Service) resyncOnce(ctx context.Context, userID string) (again bool, err error) {
	if !s.federated() || s.isLocal(userID) {
		return false, nil
	}
	if s.Fed.SharedWithLocal == nil || !s.Fed.SharedWithLocal(ctx, userID) {
		return false, s.store.DropRemoteDeviceLists(ctx, []string{userID})
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultRemoteTimeout)
	defer cancel()
	raw, err := s.Fed.Remote.UserDevices(ctx, matrix.ServerOf(userID), userID)
	if err != nil {
		return false, err
	}
	var res struct {
		UserID   string `json:"user_id"`
		StreamID int64  `json:"stream_id"`
		Devices  []struct {
			DeviceID    string          `json:"device_id"`
			Keys        json.RawMessage `json:"keys"`
			DisplayName *string         `json:"device_display_name"`
		} `json:"devices"`
		MasterKey      json.RawMessage `json:"master_key"`
		SelfSigningKey json.RawMessage `json:"self_signing_key"`
	}
	if err := json.Unmarshal(raw, &res); err != nil || res.UserID != userID || len(res.Devices) > MaxRemoteDevices {
		return false, errors.New("keys: bad /user/devices answer from " + matrix.ServerOf(userID))
	}
	devs := make([]store.DeviceListEntry, 0, len(res.Devices))
	seen := map[string]bool{}
	for _, d := range res.Devices {
		if d.DeviceID == "" || len(d.DeviceID) > 255 || seen[d.DeviceID] {
			continue
		}
		seen[d.DeviceID] = true
		k, ok := checkRemoteKeys(d.Keys, userID, d.DeviceID)
		if !ok {
			continue // one bad device does not hide the others
		}
		devs = append(devs, store.DeviceListEntry{DeviceID: d.DeviceID, DisplayName: d.DisplayName, Keys: k})
	}
	cs := map[string]json.RawMessage{}
	for typ, raw := range map[string]json.RawMessage{"master": res.MasterKey, "self_signing": res.SelfSigningKey} {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		if k, ok := checkRemoteCrossSigning(raw, userID, typ); ok {
			cs[typ] = k
		}
	}
	unlock := s.userLock(userID)
	defer unlock()
	f := s.fed()
	f.mu.Lock()
	dirty := f.resyncs[userID]
	if dirty {
		f.resyncs[userID] = false
	}
	f.mu.Unlock()
	if dirty {
		return true, nil
	}
	wctx, done := s.deviceChange(ctx, userID)
	err = s.store.ReplaceRemoteDeviceList(wctx, userID, res.StreamID, devs, cs)
	done(err == nil)
	return false, err
}

// DropUnshared forgets the cached lists of remote users no local user
// shares a room with any more (called after membership changes).
func (s *Service) DropUnshared(ctx context.Context) error {
	if !s.federated() {
		return nil
	}
	_, err := s.store.DropUnsharedRemoteDeviceLists(ctx)
	return err
}

// DropRemoteLists forgets the cached lists of these remote users (their
// membership changed: a user who left and came back may have changed
// devices meanwhile, unannounced to us).
func (s *Service) DropRemoteLists(ctx context.Context, userIDs []string) error {
	var remote []string
	for _, u := range userIDs {
		if !s.isLocal(u) {
			remote = append(remote, u)
		}
	}
	if len(remote) == 0 || !s.federated() {
		return nil
	}
	return s.store.DropRemoteDeviceLists(ctx, remote)
}

// --- queries and claims across servers -----------------------------------------

// failure is a server's entry in failures (as Synapse reports them): the
// status it answered with, else 504 for no answer in time and 503 for
// none at all. The error itself stays in the logs of the caller: it may
// name addresses the client has no business knowing.
func failure(err error) map[string]any {
	var st interface{ HTTPStatus() int }
	switch {
	case errors.As(err, &st):
		return map[string]any{"status": st.HTTPStatus(), "message": "The server refused the request"}
	case errors.Is(err, context.DeadlineExceeded):
		return map[string]any{"status": http.StatusGatewayTimeout, "message": "The server did not answer in time"}
	}
	return map[string]any{"status": http.StatusServiceUnavailable, "message": "The server could not be reached"}
}

// fanOut runs call for each server in parallel, within timeout, and
// returns the failures of those that did not answer.
func fanOut[T any](ctx context.Context, timeout time.Duration, byServer map[string]T, call func(ctx context.Context, server string, req T) error) map[string]any {
	if timeout <= 0 {
		timeout = DefaultRemoteTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	failures := map[string]any{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxParallelServers)
	for server, req := range byServer {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				mu.Lock()
				failures[server] = failure(ctx.Err())
				mu.Unlock()
				return
			}
			if err := call(ctx, server, req); err != nil {
				mu.Lock()
				failures[server] = failure(err)
				mu.Unlock()
			}
		}()
	}
	// Every call has the deadline: none outlives it by more than its own
	// unwinding.
	wg.Wait()
	return failures
}

// queryRemote fills res with remote users' keys: from the cache for users
// a local user shares a room with (their list is then fetched and cached
// if it is not yet), else from their server's /user/keys/query, each server
// asked in parallel within timeout.
func (s *Service) queryRemote(ctx context.Context, res *QueryResult, users map[string][]string, timeout time.Duration) error {
	byServer := map[string]map[string][]string{}
	var unshared, toCache []string
	for userID, devices := range users {
		shared := s.Fed.SharedWithLocal != nil && s.Fed.SharedWithLocal(ctx, userID)
		if shared {
			devs, cs, _, cached, err := s.store.RemoteDeviceList(ctx, userID)
			if err != nil {
				return err
			}
			if cached {
				fillFromCache(res, userID, devices, devs, cs)
				continue
			}
			toCache = append(toCache, userID)
		} else {
			unshared = append(unshared, userID)
		}
		srv := matrix.ServerOf(userID)
		if byServer[srv] == nil {
			byServer[srv] = map[string][]string{}
		}
		if devices == nil {
			devices = []string{}
		}
		byServer[srv][userID] = devices
	}
	if len(unshared) > 0 {
		// A cache must not outlive sharing a room (nobody tells us of
		// changes any more); dropped here too in case no membership change
		// was seen.
		if err := s.store.DropRemoteDeviceLists(ctx, unshared); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	failures := fanOut(ctx, timeout, byServer, func(ctx context.Context, server string, req map[string][]string) error {
		raw, err := s.Fed.Remote.QueryKeys(ctx, server, req)
		if err != nil {
			return err
		}
		var r struct {
			DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
			MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
			SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return errors.New("the answer is not JSON")
		}
		mu.Lock()
		defer mu.Unlock()
		for userID := range req {
			if matrix.ServerOf(userID) != server {
				continue
			}
			out := map[string]json.RawMessage{}
			for deviceID, k := range r.DeviceKeys[userID] {
				if _, ok := checkRemoteKeys(k, userID, deviceID); ok && len(out) < MaxRemoteDevices {
					out[deviceID] = k
				}
			}
			res.DeviceKeys[userID] = out
			if k, ok := r.MasterKeys[userID]; ok {
				if _, good := checkRemoteCrossSigning(k, userID, "master"); good {
					res.MasterKeys[userID] = k
				}
			}
			if k, ok := r.SelfSigningKeys[userID]; ok {
				if _, good := checkRemoteCrossSigning(k, userID, "self_signing"); good {
					res.SelfSigningKeys[userID] = k
				}
			}
		}
		return nil
	})
	for srv, f := range failures {
		res.Failures[srv] = f
	}
	// Cache the lists of users a local user shares a room with, for next
	// time: only from servers that answered (a server that is down would
	// only tie up the resyncs).
	for _, u := range toCache {
		if _, failed := failures[matrix.ServerOf(u)]; !failed {
			s.resync(ctx, u)
		}
	}
	return nil
}

func fillFromCache(res *QueryResult, userID string, want []string, devs []store.DeviceListEntry, cs map[string]json.RawMessage) {
	out := map[string]json.RawMessage{}
	for _, d := range devs {
		if d.Keys == nil || (len(want) > 0 && !contains(want, d.DeviceID)) {
			continue
		}
		k := d.Keys
		if d.DisplayName != nil {
			if j, err := mergeKey(k, nil, d.DisplayName); err == nil {
				k = j
			}
		}
		out[d.DeviceID] = k
	}
	res.DeviceKeys[userID] = out
	if k, ok := cs["master"]; ok {
		res.MasterKeys[userID] = k
	}
	if k, ok := cs["self_signing"]; ok {
		res.SelfSigningKeys[userID] = k
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// claimRemote claims remote devices' keys from their servers, in parallel
// within timeout.
func (s *Service) claimRemote(ctx context.Context, res *ClaimResult, req map[string]map[string]map[string]string, timeout time.Duration) {
	var mu sync.Mutex
	failures := fanOut(ctx, timeout, req, func(ctx context.Context, server string, body map[string]map[string]string) error {
		raw, err := s.Fed.Remote.ClaimKeys(ctx, server, body)
		if err != nil {
			return err
		}
		var r struct {
			OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			return errors.New("the answer is not JSON")
		}
		mu.Lock()
		defer mu.Unlock()
		for userID, devs := range r.OneTimeKeys {
			asked, ok := body[userID]
			if !ok {
				continue
			}
			for deviceID, keys := range devs {
				if _, ok := asked[deviceID]; !ok || len(keys) != 1 {
					continue
				}
				if res.OneTimeKeys[userID] == nil {
					res.OneTimeKeys[userID] = map[string]map[string]json.RawMessage{}
				}
				res.OneTimeKeys[userID][deviceID] = keys
			}
		}
		return nil
	})
	for srv, f := range failures {
		res.Failures[srv] = f
	}
}

// FederationQuery answers POST /_matrix/federation/v1/user/keys/query from
// another server: this server's users only, their user-signing keys never.
func (s *Service) FederationQuery(ctx context.Context, users map[string][]string) (*QueryResult, error) {
	local := map[string][]string{}
	for u, d := range users {
		if !matrix.ValidUserID(u) {
			return nil, matrix.InvalidParam("%q is not a valid user ID", u)
		}
		if s.isLocal(u) {
			local[u] = d
		}
	}
	res, err := s.Query(ctx, "", local, 0)
	if err != nil {
		return nil, err
	}
	res.UserSigningKeys = nil
	res.Failures = nil
	return res, nil
}

// FederationClaim answers POST /_matrix/federation/v1/user/keys/claim.
func (s *Service) FederationClaim(ctx context.Context, req map[string]map[string]string) (*ClaimResult, error) {
	local := map[string]map[string]string{}
	for u, d := range req {
		if !matrix.ValidUserID(u) {
			return nil, matrix.InvalidParam("%q is not a valid user ID", u)
		}
		if s.isLocal(u) {
			local[u] = d
		}
	}
	res, err := s.Claim(ctx, local, 0)
	if err != nil {
		return nil, err
	}
	res.Failures = nil
	return res, nil
}
