package room

import (
	"context"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// timestampCandidates bounds how many events near a timestamp are examined
// for one the user may see.
const timestampCandidates = 50

// EventAtTimestamp returns the visible event closest to ts in the given
// direction: at or before it (backwards) or at or after it
// (GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event).
func (s *Service) EventAtTimestamp(ctx context.Context, roomID, userID string, ts int64, backwards bool) (*store.StoredEvent, error) {
	vis, err := s.CanRead(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	rows, err := s.store.EventsNearTimestamp(ctx, roomID, ts, backwards, timestampCandidates)
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if vis.CanSee(rows[i].Pos, &rows[i]) {
			return &rows[i], nil
		}
	}
	return nil, matrix.NotFound("Unable to find an event in the room from %d in that direction", ts)
}

// ServerEventAtTimestamp is EventAtTimestamp for another server (the
// Server-Server API's timestamp_to_event; the caller checked that the
// server has a member in the room): the closest event of the room's history
// here, whoever may see it, as Synapse answers.
func (s *Service) ServerEventAtTimestamp(ctx context.Context, roomID string, ts int64, backwards bool) (*store.StoredEvent, error) {
	rows, err := s.store.EventsNearTimestamp(ctx, roomID, ts, backwards, 1)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, matrix.NotFound("Unable to find an event in the room from %d in that direction", ts)
	}
	return &rows[0], nil
}
