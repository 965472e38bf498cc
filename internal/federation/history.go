package federation

import (
	"context"
	"slices"

	"conclave/internal/event"
)

// maxWalk bounds the events one walk of the room graph visits.
const maxWalk = 5000

// MissingEvents answers /get_missing_events: walking back from latest
// through prev_events, the events not in earliest nor before them, at most
// limit, of depth at least minDepth, oldest first (Server-Server API,
// "Retrieving missing events"), each as server may see it (redacted if not:
// room.Service.ForServer).
func (s *Service) MissingEvents(ctx context.Context, roomID, server string, earliest, latest []string, limit int, minDepth int64) ([]*event.PDU, error) {
	stop := make(map[string]bool, len(earliest))
	for _, id := range earliest {
		stop[id] = true
	}
	seen := map[string]bool{}
	for _, id := range latest {
		seen[id] = true
	}
	frontier, err := s.Rooms.Events(ctx, roomID, latest)
	if err != nil {
		return nil, err
	}
	var out []*event.PDU
	for len(frontier) > 0 && len(out) < limit && len(seen) < maxWalk {
		var next []string
		for _, ev := range frontier {
			for _, p := range ev.PrevEvents {
				if !seen[p] && !stop[p] {
					seen[p] = true
					next = append(next, p)
				}
			}
		}
		evs, err := s.Rooms.Events(ctx, roomID, next)
		if err != nil {
			return nil, err
		}
		frontier = frontier[:0]
		for _, ev := range evs {
			if ev.Depth < minDepth {
				continue
			}
			out = append(out, ev)
			frontier = append(frontier, ev)
			if len(out) == limit {
				break
			}
		}
	}
	slices.SortFunc(out, byDepth)
	return s.Rooms.ForServer(ctx, roomID, server, out)
}

// Backfill answers /backfill: the events from the given ones (included)
// back through prev_events, breadth first, at most limit, newest first, each
// as server may see it (redacted if not).
func (s *Service) Backfill(ctx context.Context, roomID, server string, from []string, limit int) ([]*event.PDU, error) {
	seen := map[string]bool{}
	var out []*event.PDU
	next := slices.Clone(from)
	for _, id := range next {
		seen[id] = true
	}
	for len(next) > 0 && len(out) < limit && len(seen) < maxWalk {
		evs, err := s.Rooms.Events(ctx, roomID, next)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(evs, func(a, b *event.PDU) int { return byDepth(b, a) })
		next = next[:0]
		for _, ev := range evs {
			if len(out) == limit {
				break
			}
			out = append(out, ev)
			for _, p := range ev.PrevEvents {
				if !seen[p] {
					seen[p] = true
					next = append(next, p)
				}
			}
		}
	}
	return s.Rooms.ForServer(ctx, roomID, server, out)
}

func byDepth(a, b *event.PDU) int {
	switch {
	case a.Depth != b.Depth:
		if a.Depth < b.Depth {
			return -1
		}
		return 1
	case a.EventID < b.EventID:
		return -1
	case a.EventID > b.EventID:
		return 1
	}
	return 0
}
