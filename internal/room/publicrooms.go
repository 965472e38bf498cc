package room

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"conclave/internal/matrix"
)

// The public room directory as both APIs ask for it: the client's
// GET/POST /_matrix/client/v3/publicRooms and the federation's
// GET/POST /_matrix/federation/v1/publicRooms take the same parameters and
// answer the same shape.

// MaxPublicRoomsLimit caps one page of the room directory.
const MaxPublicRoomsLimit = 500

// maxRoomTypes bounds filter.room_types.
const maxRoomTypes = 100

// PublicRoomsRequest is a /publicRooms request (the POST body; GET carries
// limit, since, include_all_networks and third_party_instance_id in the
// query).
type PublicRoomsRequest struct {
	Limit  *int               `json:"limit,omitempty"`
	Since  string             `json:"since,omitempty"`
	Filter *PublicRoomsFilter `json:"filter,omitempty"`
	// This server has no third-party networks (application service
	// protocols): include_all_networks lists the same rooms, and a
	// third_party_instance_id none.
	IncludeAllNetworks   bool   `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string `json:"third_party_instance_id,omitempty"`
}

// PublicRoomsFilter is the request's filter.
type PublicRoomsFilter struct {
	GenericSearchTerm string `json:"generic_search_term,omitempty"`
	// RoomTypes: a null entry stands for rooms without a type.
	RoomTypes []*string `json:"room_types,omitempty"`
}

// PublicRoomsResponse is the answer (Client-Server API,
// "PublishedRoomsResponse").
type PublicRoomsResponse struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	Total     int          `json:"total_room_count_estimate"`
}

// ParsePublicRoomsQuery reads the GET form's query parameters.
func ParsePublicRoomsQuery(limit, since, includeAll, thirdParty string) (*PublicRoomsRequest, error) {
	req := &PublicRoomsRequest{Since: since, ThirdPartyInstanceID: thirdParty}
	if limit != "" {
		n, err := strconv.Atoi(limit)
		if err != nil {
			return nil, matrix.InvalidParam("limit must be an integer")
		}
		req.Limit = &n
	}
	switch includeAll {
	case "", "false":
	case "true":
		req.IncludeAllNetworks = true
	default:
		return nil, matrix.InvalidParam("include_all_networks must be true or false")
	}
	return req, nil
}

// PublicRoomsFor answers a /publicRooms request over this server's
// directory. Pagination tokens are "o<offset>" into the list ordered by
// joined members.
func (s *Service) PublicRoomsFor(ctx context.Context, req *PublicRoomsRequest) (*PublicRoomsResponse, error) {
	q := PublicRoomsQuery{Limit: MaxPublicRoomsLimit}
	if req.Limit != nil {
		if *req.Limit < 0 {
			return nil, matrix.InvalidParam("limit must not be negative")
		}
		if *req.Limit > 0 {
			q.Limit = min(*req.Limit, MaxPublicRoomsLimit)
		}
	}
	if req.Since != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(req.Since, "o"))
		if !strings.HasPrefix(req.Since, "o") || err != nil || n < 0 {
			return nil, matrix.InvalidParam("Invalid since token")
		}
		q.Offset = n
	}
	if req.IncludeAllNetworks && req.ThirdPartyInstanceID != "" {
		// Synapse: "You can only use include_all_networks or third_party_instance_id".
		return nil, matrix.InvalidParam("include_all_networks and third_party_instance_id cannot be used together")
	}
	if f := req.Filter; f != nil {
		if len(f.RoomTypes) > maxRoomTypes {
			return nil, matrix.InvalidParam("room_types is limited to %d entries", maxRoomTypes)
		}
		q.SearchTerm = f.GenericSearchTerm
		if f.RoomTypes != nil {
			q.RoomTypes = []string{}
			for _, t := range f.RoomTypes {
				if t == nil {
					q.RoomTypes = append(q.RoomTypes, "")
				} else {
					q.RoomTypes = append(q.RoomTypes, *t)
				}
			}
		}
	}
	if req.ThirdPartyInstanceID != "" {
		// No such network here.
		return &PublicRoomsResponse{Chunk: []PublicRoom{}}, nil
	}
	page, err := s.PublicRooms(ctx, q)
	if err != nil {
		return nil, err
	}
	resp := &PublicRoomsResponse{Chunk: page.Rooms, Total: page.Total}
	if end := q.Offset + len(page.Rooms); end < page.Total {
		resp.NextBatch = "o" + strconv.Itoa(end)
	}
	if q.Offset > 0 {
		resp.PrevBatch = "o" + strconv.Itoa(max(0, q.Offset-q.Limit))
	}
	return resp, nil
}

// RemotePublicRooms is another server's answer, its entries kept as they
// came (they may carry fields this server does not know).
type RemotePublicRooms struct {
	Chunk     []json.RawMessage `json:"chunk"`
	NextBatch string            `json:"next_batch,omitempty"`
	PrevBatch string            `json:"prev_batch,omitempty"`
	Total     *int              `json:"total_room_count_estimate,omitempty"`
}
