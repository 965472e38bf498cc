package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/matrix"
	"conclave/internal/room"
	"conclave/internal/store"
)

// SupportedRoomVersions are the room versions this server can join over
// federation: every known one (1 and 2 with the historical event format,
// 1 with state resolution v1).
func SupportedRoomVersions() []string {
	var out []string
	for _, id := range event.KnownRoomVersions() {
		if rv, _ := event.GetRoomVersion(id); supported(rv) {
			out = append(out, id)
		}
	}
	return out
}

func supported(rv *event.RoomVersion) bool { return rv != nil }

// eventRefs reads the prev_events or auth_events of a template: event IDs,
// or the [event ID, hashes] pairs of room versions 1 and 2.
type eventRefs []string

func (r *eventRefs) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		var id string
		if json.Unmarshal(x, &id) != nil {
			var pair []json.RawMessage
			if err := json.Unmarshal(x, &pair); err != nil || len(pair) == 0 || json.Unmarshal(pair[0], &id) != nil {
				return errors.New("not an event ID nor an [event ID, hashes] pair")
			}
		}
		out = append(out, id)
	}
	*r = out
	return nil
}

// Join joins userID (of this server) to a room this server is not in,
// through the first of servers that answers (Server-Server API, "Joining
// Rooms": make_join, then send_join v2), and imports the room from the
// answer. content holds extra keys of the join's content (displayname,
// avatar_url, reason). It returns the join's event ID.
func (s *Service) Join(ctx context.Context, roomID, userID string, servers []string, content map[string]json.RawMessage) (string, error) {
	return s.join(ctx, roomID, userID, servers, content, false)
}

// JoinResident joins userID to a room this server is in but whose
// restricted join rule no user of this server can authorise (none may
// invite): another server in the room builds and signs the join
// (make_join/send_join with join_authorised_via_users_server naming one of
// its users), and the signed join then comes in like any event received
// from that server. Synapse does the same (Client-Server API, "Restricted
// rooms": the joining server asks a resident server that can authorise).
func (s *Service) JoinResident(ctx context.Context, roomID, userID string, servers []string, content map[string]json.RawMessage) (string, error) {
	in, err := s.Rooms.ServersInRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	return s.join(ctx, roomID, userID, append(slices.Clone(servers), in...), content, true)
}

func (s *Service) join(ctx context.Context, roomID, userID string, servers []string, content map[string]json.RawMessage, resident bool) (string, error) {
	var errs []error
	seen := map[string]bool{}
	tried := 0
	for _, srv := range servers {
		if srv == s.ServerName || srv == "" || seen[srv] {
			continue
		}
		seen[srv] = true
		tried++
		id, err := s.joinVia(ctx, srv, roomID, userID, content, resident)
		if err == nil {
			return id, nil
		}
		s.Log.Info("federation: join through a server failed", "room", roomID, "server", srv, "err", err)
		var me *matrix.Error
		if errors.As(err, &me) && me.Code == matrix.ErrForbidden {
			// Refused by the room's rules: another server would say the same.
			return "", me
		}
		errs = append(errs, fmt.Errorf("%s: %w", srv, err))
	}
	if tried == 0 {
		return "", matrix.NotFound("No known servers to join room %s through", roomID)
	}
	return "", matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "No server could get us into the room: %v", errors.Join(errs...))
}

// template is what make_join answers, as far as the joining server uses it.
type template struct {
	Type     string          `json:"type"`
	StateKey *string         `json:"state_key"`
	Sender   string          `json:"sender"`
	RoomID   string          `json:"room_id"`
	Content  json.RawMessage `json:"content"`
	Prev     eventRefs       `json:"prev_events"`
	Auth     eventRefs       `json:"auth_events"`
	Depth    int64           `json:"depth"`
}

func (s *Service) joinVia(ctx context.Context, srv, roomID, userID string, extra map[string]json.RawMessage, resident bool) (string, error) {
	mm, err := s.Client.MakeJoin(ctx, srv, roomID, userID, SupportedRoomVersions())
	if err != nil {
		return "", remoteError(err)
	}
	rv, ok := event.GetRoomVersion(mm.RoomVersion)
	if !ok || !supported(rv) {
		return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrIncompatibleRoomVer, "Room version %q is not supported", mm.RoomVersion)
	}
	var t template
	if err := json.Unmarshal(mm.Event, &t); err != nil {
		return "", fmt.Errorf("make_join answered an invalid template: %w", err)
	}
	if t.Type != "m.room.member" || t.StateKey == nil || *t.StateKey != userID || t.Sender != userID || t.RoomID != roomID {
		return "", errors.New("make_join answered a template for another event")
	}
	if len(t.Prev) == 0 || len(t.Prev) > 20 || len(t.Auth) > 10 {
		return "", errors.New("make_join answered a template with bad prev or auth events")
	}
	content := map[string]json.RawMessage{}
	if len(t.Content) > 0 {
		if err := json.Unmarshal(t.Content, &content); err != nil {
			return "", errors.New("make_join answered a template with bad content")
		}
	}
	for k, v := range extra {
		if k != "membership" && k != "join_authorised_via_users_server" {
			content[k] = v
		}
	}
	content["membership"] = json.RawMessage(`"join"`)
	raw, err := json.Marshal(content)
	if err != nil {
		return "", err
	}
	sk := userID
	pdu, err := (&event.Proto{Type: "m.room.member", StateKey: &sk, Sender: userID, RoomID: roomID, Content: raw,
		PrevEvents: t.Prev, AuthEvents: t.Auth, Depth: t.Depth, OriginServerTS: nowMillis()}).Build(rv, s.ServerName, s.Key)
	if err != nil {
		return "", err
	}
	resp, err := s.Client.SendJoinV2(ctx, srv, roomID, pdu.EventID, pdu.Raw, false)
	if err != nil {
		return "", remoteError(err)
	}
	join := pdu
	if len(resp.Event) > 0 {
		// The resident server may have signed it (a restricted join).
		signed, err := event.ParsePDU(rv, resp.Event)
		if err != nil || signed.EventID != pdu.EventID {
			return "", errors.New("send_join answered another event")
		}
		if err := s.Keys.VerifyEvent(ctx, signed); err != nil {
			return "", fmt.Errorf("send_join answered a join whose signatures fail: %w", err)
		}
		join = signed
	}
	if resident {
		return join.EventID, s.receiveJoin(ctx, srv, rv, join)
	}
	state := s.checkedEvents(ctx, rv, roomID, resp.State)
	chain := s.checkedEvents(ctx, rv, roomID, resp.AuthChain)
	if err := s.Rooms.ImportJoin(ctx, rv, join, state, chain); err != nil {
		return "", err
	}
	return join.EventID, nil
}

// receiveJoin takes a join another server signed into a room this server
// is in, through the room writer like any received event (its prev events
// are the resident server's extremities: missing ones are fetched from it).
func (s *Service) receiveJoin(ctx context.Context, srv string, rv *event.RoomVersion, join *event.PDU) error {
	for round := 0; ; round++ {
		got, err := s.Rooms.Receive(ctx, join)
		var missing *room.MissingEventsError
		if errors.As(err, &missing) && round < missingEventsRounds {
			if ferr := s.fillGap(ctx, srv, join); ferr != nil {
				return fmt.Errorf("the join cites events %s could not give: %w", srv, ferr)
			}
			continue
		}
		if err != nil {
			return err
		}
		switch got.Outcome {
		case room.Rejected, room.SoftFailed:
			return matrix.Forbidden("The join is not allowed by the room's state: %s", got.Reason)
		}
		return nil
	}
}

// checkedEvents parses events of a room from another server, leaving out
// those that fail to parse or whose signatures fail; a content hash that
// does not match gives the redacted event.
func (s *Service) checkedEvents(ctx context.Context, rv *event.RoomVersion, roomID string, raws []json.RawMessage) []*event.PDU {
	out := make([]*event.PDU, 0, len(raws))
	seen := make(map[string]bool, len(raws))
	for _, raw := range raws {
		ev, err := s.checkPDU(ctx, rv, raw)
		if err != nil || event.RoomIDForCreate(ev) != roomID || seen[ev.EventID] {
			continue
		}
		seen[ev.EventID] = true
		out = append(out, ev)
	}
	return out
}

// remoteError turns a remote server's refusal into an error for our client:
// its 403 stays a 403 (the room's rules), anything else is the remote's
// failure.
func remoteError(err error) error {
	var fe *fedclient.Error
	if errors.As(err, &fe) && fe.Status == http.StatusForbidden {
		return matrix.Forbidden("%s", fe.Error())
	}
	if errors.As(err, &fe) && fe.Status == http.StatusBadRequest && fe.Errcode == matrix.ErrIncompatibleRoomVer {
		return matrix.Errorf(http.StatusBadRequest, matrix.ErrIncompatibleRoomVer, "%s", fe.Error())
	}
	return err
}

// nowMillis is the time events are stamped with.
func nowMillis() int64 { return time.Now().UnixMilli() }

// ResolveAlias asks the alias's server which room it names and through
// which servers it can be joined (/query/directory).
func (s *Service) ResolveAlias(ctx context.Context, alias string) (string, []string, error) {
	d, err := s.Client.QueryDirectory(ctx, matrix.ServerOf(alias), alias)
	if err != nil {
		var fe *fedclient.Error
		if errors.As(err, &fe) && fe.Status == http.StatusNotFound {
			return "", nil, matrix.NotFound("Room alias %s not found", alias)
		}
		return "", nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Could not ask %s about %s: %v", matrix.ServerOf(alias), alias, err)
	}
	if !matrix.ValidRoomID(d.RoomID) {
		return "", nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "%s answered an invalid room ID", matrix.ServerOf(alias))
	}
	return d.RoomID, d.Servers, nil
}

// Profile asks userID's server for their profile (/query/profile).
func (s *Service) Profile(ctx context.Context, userID string) (*store.Profile, error) {
	raw, err := s.Client.QueryProfile(ctx, matrix.ServerOf(userID), userID, "")
	if err != nil {
		var fe *fedclient.Error
		if errors.As(err, &fe) && fe.Status == http.StatusNotFound {
			return nil, matrix.NotFound("Profile was not found")
		}
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Could not ask %s for the profile: %v", matrix.ServerOf(userID), err)
	}
	var p struct {
		DisplayName string `json:"displayname"`
		AvatarURL   string `json:"avatar_url"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "%s answered an invalid profile", matrix.ServerOf(userID))
	}
	return &store.Profile{UserID: userID, DisplayName: p.DisplayName, AvatarURL: p.AvatarURL}, nil
}
