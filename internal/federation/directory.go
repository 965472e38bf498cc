package federation

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"conclave/internal/fedclient"
	"conclave/internal/matrix"
	"conclave/internal/outbound"
	"conclave/internal/room"
)

// maxRemoteChunk bounds the entries kept of another server's answer.
const maxRemoteChunk = 1000

// PublicRooms asks server for its public room directory on behalf of a
// client (GET /publicRooms?server=). As Synapse does, a request with a
// filter is POSTed, one without is a GET. The other server's refusals
// (4xx) reach the client as they came; its failures are 502.
func (s *Service) PublicRooms(ctx context.Context, server string, req *room.PublicRoomsRequest) (*room.RemotePublicRooms, error) {
	var raw json.RawMessage
	var err error
	if req.Filter != nil {
		raw, err = s.Client.PublicRooms(ctx, server, nil, req)
	} else {
		q := url.Values{}
		if req.Limit != nil {
			q.Set("limit", strconv.Itoa(*req.Limit))
		}
		if req.Since != "" {
			q.Set("since", req.Since)
		}
		if req.IncludeAllNetworks {
			q.Set("include_all_networks", "true")
		}
		if req.ThirdPartyInstanceID != "" {
			q.Set("third_party_instance_id", req.ThirdPartyInstanceID)
		}
		raw, err = s.Client.PublicRooms(ctx, server, q, nil)
	}
	if err != nil {
		return nil, askError(server, err)
	}
	var out room.RemotePublicRooms
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "%s answered an invalid room directory", server)
	}
	if out.Chunk == nil {
		out.Chunk = []json.RawMessage{}
	}
	if len(out.Chunk) > maxRemoteChunk {
		out.Chunk = out.Chunk[:maxRemoteChunk]
	}
	for _, c := range out.Chunk {
		var entry struct {
			RoomID string `json:"room_id"`
		}
		if json.Unmarshal(c, &entry) != nil || !matrix.ValidRoomID(entry.RoomID) {
			return nil, matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "%s answered an invalid room directory entry", server)
		}
	}
	return &out, nil
}

// askError is what a client is told when another server did not answer
// what it asked on its behalf: the other server's 4xx Matrix errors as
// they came, the closed circle's refusal as 403, anything else 502.
func askError(server string, err error) error {
	var na *outbound.NotAllowedError
	if errors.As(err, &na) {
		return na.MatrixError()
	}
	var fe *fedclient.Error
	if errors.As(err, &fe) && fe.Status >= 400 && fe.Status < 500 && fe.Errcode != "" {
		return matrix.Errorf(fe.Status, fe.Errcode, "%s: %s", server, fe.Message)
	}
	return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Could not ask %s: %v", server, err)
}

// hierarchyAskTimeout bounds one server's answer about a room of a space:
// a client's /hierarchy waits for it.
const hierarchyAskTimeout = 10 * time.Second

// maxRemoteChildren bounds the children kept of another server's answer.
const maxRemoteChildren = 100

// Hierarchy asks the servers in via, in turn, about a room of a space
// (GET /_matrix/federation/v1/hierarchy/{roomId}) for the room service's
// hierarchy walk (room.RemoteHierarchy). The first usable answer wins; a
// server that refuses (404: it does not know the room or we may not see
// it) or fails passes the question on to the next.
func (s *Service) Hierarchy(ctx context.Context, roomID string, via []string, suggestedOnly bool) (*room.RemoteSpace, error) {
	var last error = errors.New("federation: no server to ask")
	for _, server := range via {
		if server == s.ServerName || !s.Client.Allowed(server) {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, hierarchyAskTimeout)
		raw, err := s.Client.Hierarchy(actx, server, roomID, suggestedOnly)
		cancel()
		if err != nil {
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		var sp room.RemoteSpace
		if json.Unmarshal(raw, &sp) != nil || sp.Room.RoomID != roomID {
			last = errors.New("federation: " + server + " answered an invalid hierarchy")
			continue
		}
		if len(sp.Children) > maxRemoteChildren {
			sp.Children = sp.Children[:maxRemoteChildren]
		}
		if len(sp.Room.ChildrenState) > maxRemoteChildren {
			sp.Room.ChildrenState = sp.Room.ChildrenState[:maxRemoteChildren]
		}
		if len(sp.Inaccessible) > maxRemoteChildren {
			sp.Inaccessible = sp.Inaccessible[:maxRemoteChildren]
		}
		return &sp, nil
	}
	// A server's refusal (4xx) is told as a Matrix error, so the caller
	// can tell it from a failure to answer.
	var fe *fedclient.Error
	if errors.As(last, &fe) && fe.Status >= 400 && fe.Status < 500 {
		code := fe.Errcode
		if code == "" {
			code = matrix.ErrUnknown
		}
		return nil, matrix.Errorf(fe.Status, code, "%s", fe.Error())
	}
	return nil, last
}
