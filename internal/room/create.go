package room

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"

	"conclave/internal/accessrules"
	"conclave/internal/event"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// CreateRequest is a parsed createRoom request (Client-Server API, "Creation").
type CreateRequest struct {
	Creator            string
	Visibility         string // "public" or "private"
	RoomAliasName      string
	Name               *string
	Topic              *string
	Invite             []string
	RoomVersion        string
	CreationContent    map[string]json.RawMessage
	InitialState       []StateEvent
	Preset             string
	IsDirect           bool
	PowerLevelOverride map[string]json.RawMessage
	// ServerNotice: a room the server makes for its own notices
	// (internal/notices). Its messages come from the server, which has no
	// end-to-end keys: the encryption policy does not apply to it.
	ServerNotice bool
}

// StateEvent is a state event given by a client (initial_state).
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// Limits on createRoom lists: more is refused, not truncated.
const (
	maxInitialState = 100
	maxInvites      = 100
)

// presets gives the state each createRoom preset implies (Client-Server API,
// POST /createRoom, the preset table). public_chat's guest_access
// "forbidden" is the value a room without m.room.guest_access has, so no
// event is sent for it, as Synapse does ("guest_can_join": False): clients
// and Complement count a public room's initial events (its
// get_missing_events test expects exactly join rules, then history
// visibility, after the power levels).
var presets = map[string]struct {
	joinRule, history, guest string
	inviteesAreAdmins        bool
	inviteLevel              int
}{
	"private_chat":         {"invite", "shared", "can_join", false, 0},
	"trusted_private_chat": {"invite", "shared", "can_join", true, 0},
	"public_chat":          {"public", "shared", "", false, 50},
}

// CreateRoom creates a room and its initial events in one transaction.
func (s *Service) CreateRoom(ctx context.Context, req *CreateRequest) (string, error) {
	roomID, remoteInvites, err := s.createRoom(ctx, req)
	if err != nil {
		return "", err
	}
	// Other servers' users sign their invites: sent once the room exists
	// and its lock is released (SetMembership takes it).
	for _, inv := range remoteInvites {
		var extra map[string]json.RawMessage
		if req.IsDirect {
			extra = map[string]json.RawMessage{"is_direct": json.RawMessage("true")}
		}
		if _, err := s.SetMembership(ctx, &MembershipRequest{RoomID: roomID, Sender: req.Creator, Target: inv, Membership: "invite", Extra: extra}); err != nil {
			return roomID, err
		}
	}
	return roomID, nil
}

func (s *Service) createRoom(ctx context.Context, req *CreateRequest) (string, []string, error) {
	versionID := req.RoomVersion
	if versionID == "" {
		versionID = event.DefaultRoomVersion
	}
	rv, ok := event.GetRoomVersion(versionID)
	if !ok || !rv.Creatable() {
		return "", nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrUnsupportedRoomVer, "Room version %q is not supported", versionID)
	}
	preset := req.Preset
	if preset == "" {
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	}
	p, ok := presets[preset]
	if !ok {
		return "", nil, matrix.BadJSON("Unknown preset %q", preset)
	}
	if req.Visibility != "" && req.Visibility != "public" && req.Visibility != "private" {
		return "", nil, matrix.BadJSON("visibility must be public or private")
	}
	if len(req.InitialState) > maxInitialState || len(req.Invite) > maxInvites {
		return "", nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrLimitExceeded, "Too many initial_state entries or invites")
	}
	for _, inv := range req.Invite {
		if !matrix.ValidUserID(inv) {
			return "", nil, matrix.InvalidParam("Invalid user ID to invite: %q", inv)
		}
	}
	for _, st := range req.InitialState {
		if st.Type == "" || len(st.Content) == 0 || st.Content[0] != '{' {
			return "", nil, matrix.BadJSON("initial_state entries need a type and an object content")
		}
		if st.Type == "m.room.create" {
			return "", nil, matrix.BadJSON("initial_state cannot contain m.room.create")
		}
		if st.Type == "m.room.retention" {
			if err := checkRetention(st.Content); err != nil {
				return "", nil, err
			}
		}
	}

	if s.AccessRules.External(req.Creator) && !req.ServerNotice {
		// External users are only ever invited (issue 12; Tchap's
		// externals cannot create rooms): their own join would break the
		// default restricted rule anyway.
		return "", nil, matrix.Forbidden("External users cannot create rooms")
	}

	var alias string
	if req.RoomAliasName != "" {
		alias = "#" + req.RoomAliasName + ":" + s.serverName
		if !matrix.ValidAlias(alias) || len(alias) > matrix.MaxIDLength {
			return "", nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrInvalidParam, "Invalid room alias name")
		}
		if _, _, err := s.store.GetAlias(ctx, alias); err == nil {
			return "", nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrRoomInUse, "Room alias already taken")
		} else if !errors.Is(err, store.ErrNotFound) {
			return "", nil, err
		}
	}

	// The create event.
	createContent := map[string]any{}
	for k, v := range req.CreationContent {
		createContent[k] = v
	}
	createContent["room_version"] = rv.ID
	if rv.PrivilegedCreators && p.inviteesAreAdmins && len(req.Invite) > 0 {
		// Room version 12 (MSC4289): the invitees of a trusted private chat
		// are its additional creators, not admins in the power levels
		// (Client-Server API, POST /createRoom, preset trusted_private_chat),
		// added to any additional_creators the client gave.
		if ac, ok := withAdditionalCreators(req.CreationContent["additional_creators"], req.Creator, req.Invite); ok {
			createContent["additional_creators"] = ac
		}
	}
	if !rv.CreatorIsSender {
		createContent["creator"] = req.Creator
	}
	roomID := ""
	if !rv.RoomIDFromCreateEvent {
		roomID = "!" + randomString(18) + ":" + s.serverName
	}
	rs := newRoomState(roomID, rv)
	var pdus []*event.PDU
	var rows []store.NewEvent
	add := func(typ string, stateKey *string, content any) error {
		raw, err := json.Marshal(content)
		if err != nil {
			return matrix.BadJSON("%s", err.Error())
		}
		proto := &event.Proto{Type: typ, StateKey: stateKey, Sender: req.Creator, Content: raw}
		pdu, err := s.build(ctx, rs, proto)
		if err != nil {
			return err
		}
		if rs.roomID == "" { // room version 12: the create event names the room
			rs.roomID = event.RoomIDForCreate(pdu)
			pdu.RoomID = rs.roomID
		}
		rows = append(rows, newEvent(rs, pdu, "", ""))
		pdus = append(pdus, pdu)
		rs.apply(pdu)
		rs.extremities = []string{pdu.EventID}
		rs.depth = pdu.Depth
		return nil
	}
	empty := ""
	if err := add("m.room.create", &empty, createContent); err != nil {
		return "", nil, err
	}
	member := map[string]any{"membership": "join"}
	s.addProfile(ctx, req.Creator, member)
	if err := add("m.room.member", &req.Creator, member); err != nil {
		return "", nil, err
	}

	initial := map[stateKey]json.RawMessage{}
	for _, st := range req.InitialState {
		initial[stateKey{st.Type, st.StateKey}] = st.Content
	}

	// The room's access rule (internal/accessrules): initial_state's,
	// checked, or the default.
	var rule accessrules.CreateDefaults
	if s.AccessRules != nil && !req.ServerNotice {
		given, hasGiven := initial[stateKey{accessrules.EventType, ""}]
		publicJoin := p.joinRule == "public"
		if c, ok := initial[stateKey{"m.room.join_rules", ""}]; ok {
			var jr struct {
				JoinRule string `json:"join_rule"`
			}
			json.Unmarshal(c, &jr)
			publicJoin = jr.JoinRule == "public"
		}
		var err error
		if rule, err = s.AccessRules.ForCreate(given, hasGiven, req.IsDirect, publicJoin, req.Visibility == "public"); err != nil {
			return "", nil, err
		}
	}

	// Power levels: the defaults, or initial_state's, then the override.
	pl := defaultPowerLevels(rv, req, p.inviteLevel, p.inviteesAreAdmins)
	if c, ok := initial[stateKey{"m.room.power_levels", ""}]; ok {
		pl = map[string]json.RawMessage{}
		if err := json.Unmarshal(c, &pl); err != nil {
			return "", nil, matrix.BadJSON("initial_state power levels must be an object")
		}
		delete(initial, stateKey{"m.room.power_levels", ""})
	}
	for k, v := range req.PowerLevelOverride {
		pl[k] = v
	}
	if rule.Rule != "" {
		// Written before the rule, the power levels must already obey it
		// (an unrestricted room's users_default stays 0).
		raw, err := json.Marshal(pl)
		if err != nil {
			return "", nil, matrix.BadJSON("%s", err.Error())
		}
		if !s.AccessRules.PowerLevelsAllowed(raw, rule.Rule) {
			return "", nil, matrix.InvalidParam("Invalid power levels content")
		}
	}
	if err := add("m.room.power_levels", &empty, pl); err != nil {
		return "", nil, err
	}
	if alias != "" {
		if err := add("m.room.canonical_alias", &empty, map[string]string{"alias": alias}); err != nil {
			return "", nil, err
		}
	}
	for _, ps := range []struct {
		typ, key, value string
	}{
		{"m.room.join_rules", "join_rule", p.joinRule},
		{"m.room.history_visibility", "history_visibility", p.history},
		{"m.room.guest_access", "guest_access", p.guest},
	} {
		if _, overridden := initial[stateKey{ps.typ, ""}]; overridden || ps.value == "" {
			continue
		}
		if err := add(ps.typ, &empty, map[string]string{ps.key: ps.value}); err != nil {
			return "", nil, err
		}
	}
	if rule.Add {
		// The default rule, added here as Tchap's module adds it to
		// initial_state (a given one comes with initial_state below).
		if err := add(accessrules.EventType, &empty, map[string]string{"rule": rule.Rule}); err != nil {
			return "", nil, err
		}
	}
	for _, st := range req.InitialState {
		k := stateKey{st.Type, st.StateKey}
		c, ok := initial[k]
		if !ok {
			continue // power levels, handled above
		}
		delete(initial, k) // a repeated (type, state_key) becomes one event with the last content given
		sk := st.StateKey
		if err := add(st.Type, &sk, c); err != nil {
			return "", nil, err
		}
	}
	// Encryption by policy: rooms made with the configured presets are
	// end-to-end encrypted from their first message unless initial_state
	// already chose an encryption.
	if s.EncryptPresets[preset] && rs.StateEvent("m.room.encryption", "") == nil && !req.ServerNotice {
		if err := add("m.room.encryption", &empty, map[string]string{"algorithm": MegolmAlgorithm}); err != nil {
			return "", nil, err
		}
	}
	if s.RequireEncryption && JoinRuleOf(rs) != "public" && !encrypted(rs) && !req.ServerNotice {
		return "", nil, matrix.Forbidden("This server requires end-to-end encryption in rooms that are not public")
	}
	if req.Name != nil {
		if err := add("m.room.name", &empty, map[string]string{"name": *req.Name}); err != nil {
			return "", nil, err
		}
	}
	if req.Topic != nil {
		// The plain topic is also written as a rich topic (spec v1.15,
		// m.room.topic "m.topic"), as Synapse does.
		topic := map[string]any{"topic": *req.Topic, "m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic, "mimetype": "text/plain"}}}}
		if err := add("m.room.topic", &empty, topic); err != nil {
			return "", nil, err
		}
	}
	seen := map[string]bool{req.Creator: true}
	var remoteInvites []string
	for _, inv := range req.Invite {
		if seen[inv] {
			continue
		}
		seen[inv] = true
		if s.InviteRemote != nil && matrix.ServerOf(inv) != s.serverName {
			remoteInvites = append(remoteInvites, inv)
			continue
		}
		c := map[string]any{"membership": "invite"}
		if req.IsDirect {
			c["is_direct"] = true
		}
		s.addProfile(ctx, inv, c)
		target := inv
		if err := add("m.room.member", &target, c); err != nil {
			return "", nil, err
		}
	}

	room := &store.Room{RoomID: rs.roomID, Version: rv.ID, Creator: req.Creator, CreatedTS: s.now().UnixMilli(), Public: req.Visibility == "public"}
	if alias != "" {
		if err := s.store.CreateAlias(ctx, alias, rs.roomID, req.Creator); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return "", nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrRoomInUse, "Room alias already taken")
			}
			return "", nil, err
		}
	}
	e, _, err := s.lockNew(rs)
	if err != nil {
		return "", nil, err
	}
	defer s.unlock(e)
	// Invites notify their targets.
	s.addPushActions(ctx, rs, pdus, rows)
	// Queued for the servers afterCommit computes on fresh state.
	s.addFed(newRoomState(rs.roomID, rv), pdus, rows)
	ctx, done := s.begin(ctx, rs.roomID, rows)
	positions, err := s.store.CreateRoom(ctx, room, rows)
	if err != nil {
		positions = nil
	}
	done(positions)
	if err != nil {
		if alias != "" {
			s.store.DeleteAlias(context.WithoutCancel(ctx), alias)
		}
		e.state = nil
		return "", nil, err
	}
	s.parsed.setVersion(rs.roomID, rv)
	fresh := newRoomState(rs.roomID, rv)
	e.state = fresh
	s.afterCommit(fresh, pdus, positions)
	return rs.roomID, remoteInvites, nil
}

// lockNew takes the writer lock of a room about to be created.
func (s *Service) lockNew(rs *roomState) (*roomEntry, *roomState, error) {
	e := s.entry(rs.roomID)
	e.mu.Lock()
	if e.state != nil {
		s.unlock(e)
		return nil, nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrRoomInUse, "Room ID already in use")
	}
	return e, rs, nil
}

func defaultPowerLevels(rv *event.RoomVersion, req *CreateRequest, inviteLevel int, inviteesAreAdmins bool) map[string]json.RawMessage {
	users := map[string]int{}
	if !rv.PrivilegedCreators {
		users[req.Creator] = 100
	}
	if inviteesAreAdmins && !rv.PrivilegedCreators { // v12: they are creators instead
		for _, inv := range req.Invite {
			users[inv] = 100
		}
	}
	j := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	events := map[string]int{
		"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
		"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
		"m.room.server_acl": 100, "m.room.encryption": 100,
	}
	if rv.PrivilegedCreators {
		// Room version 12: creators have infinite power, so upgrading the
		// room (m.room.tombstone) is kept above any level they may grant to
		// admins (Client-Server API, POST /createRoom: 150 from v12, MSC4289).
		events["m.room.tombstone"] = 150
	}
	return map[string]json.RawMessage{
		"users": j(users), "users_default": j(0), "events": j(events), "events_default": j(0),
		"state_default": j(50), "ban": j(50), "kick": j(50), "redact": j(50), "invite": j(inviteLevel),
		"notifications": j(map[string]int{"room": 50}),
	}
}

// withAdditionalCreators returns the client's additional_creators with the
// invitees appended (the creator and repeats left out); ok is false when
// the client's value is not a list of strings, which the auth rules then
// refuse as it stands.
func withAdditionalCreators(given json.RawMessage, creator string, invitees []string) (out []string, ok bool) {
	if len(given) > 0 && json.Unmarshal(given, &out) != nil {
		return nil, false
	}
	seen := map[string]bool{creator: true}
	for _, u := range out {
		seen[u] = true
	}
	for _, u := range invitees {
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out, true
}

// addProfile copies the user's display name and avatar into member content.
func (s *Service) addProfile(ctx context.Context, userID string, content map[string]any) {
	p, err := s.store.GetProfile(ctx, userID)
	if err != nil {
		return
	}
	if p.DisplayName != "" {
		content["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" {
		content["avatar_url"] = p.AvatarURL
	}
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}
