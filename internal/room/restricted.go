package room

import (
	"bytes"
	"context"
	"encoding/json"

	"conclave/internal/authrules"
	"conclave/internal/matrix"
)

// Restricted joins (room versions 8+; knock_restricted from 10). Client-Server
// API, "Restricted rooms": a user who is neither invited nor joined may join
// when they are joined to one of the rooms the join rule's allow list names;
// the resident server then picks one of its users who may invite and names
// them in the join's join_authorised_via_users_server, and signs the event
// (Server-Server API, "Restricted rooms"; auth rules v8, m.room.member join).
// joinAuthoriser (join.go) picks that user, for local joins as for
// make_join.

// keyAuthorisedVia is the m.room.member content key naming the authoriser.
const keyAuthorisedVia = "join_authorised_via_users_server"

// allowedRooms lists the room IDs of the join rule's m.room_membership
// conditions; malformed entries are skipped (an allow that is not a list
// allows nothing).
func allowedRooms(rs *roomState) map[string]bool {
	ev := rs.StateEvent("m.room.join_rules", "")
	if ev == nil {
		return nil
	}
	var c struct {
		Allow json.RawMessage `json:"allow"`
	}
	if json.Unmarshal(ev.Content, &c) != nil {
		return nil
	}
	var entries []json.RawMessage
	if json.Unmarshal(c.Allow, &entries) != nil {
		return nil
	}
	out := map[string]bool{}
	for _, raw := range entries {
		var e struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Type == "m.room_membership" && matrix.ValidRoomID(e.RoomID) {
			out[e.RoomID] = true
		}
	}
	return out
}

// authoriseJoin sets join_authorised_via_users_server in the content of a
// local user's join: the server alone decides it, so a value the client
// put there is dropped (on a join → join or an accepted invite it means
// nothing, and a value that is not the user ID of a server that signed the
// event would make the event fail the auth rules everywhere).
func (s *Service) authoriseJoin(ctx context.Context, rs *roomState, target string, content map[string]any) error {
	by, err := s.joinAuthoriser(ctx, rs, target)
	if err != nil {
		return err
	}
	delete(content, keyAuthorisedVia)
	if by != "" {
		content[keyAuthorisedVia] = by
	}
	return nil
}

// memberJoinContent applies authoriseJoin to an m.room.member event a user
// sends about themself through the state API; content that is not a join
// (or not an object: the build rejects it) is returned unchanged.
func (s *Service) memberJoinContent(ctx context.Context, rs *roomState, userID string, content json.RawMessage) (json.RawMessage, error) {
	var c map[string]any
	d := json.NewDecoder(bytes.NewReader(content))
	d.UseNumber()
	if d.Decode(&c) != nil || c["membership"] != authrules.MembershipJoin {
		return content, nil
	}
	by, err := s.joinAuthoriser(ctx, rs, userID)
	if err != nil {
		return nil, err
	}
	if _, had := c[keyAuthorisedVia]; !had && by == "" {
		return content, nil // nothing to change: keep the client's bytes
	}
	delete(c, keyAuthorisedVia)
	if by != "" {
		c[keyAuthorisedVia] = by
	}
	return json.Marshal(c)
}
