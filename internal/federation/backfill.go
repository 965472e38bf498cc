package federation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"conclave/internal/event"
	"conclave/internal/lru"
)

// Fetching history this server does not have (a client paging back past
// the point where this server joined the room): /backfill from the servers
// in the room, one at a time, every event checked as a received one, stored
// by the room writer as backfilled history (room.Service.ImportBackfill).

const (
	// backfillServers bounds the servers asked for one page.
	backfillServers = 3
	// backfillTimeout bounds one page of backfilling, all servers included:
	// a client waits for it.
	backfillTimeout = 10 * time.Second
	// maxBackfillLimit bounds the events asked for at once (Synapse serves
	// at most 100).
	maxBackfillLimit = 100
)

// backfillRetry is how long points no server had events before are not
// asked about again.
const backfillRetry = time.Minute

// BackfillRoom asks the servers in the room for up to limit events before
// points (events this server lacks; none: the prev events it lacks of its
// earliest events in the room), and stores what they give. It returns how
// many events joined the room's history here (0 when there is nothing to
// ask for, or no server had more). Concurrent calls for one room wait for
// each other, so a page is fetched once: a call that finds its points
// filled meanwhile answers 1 (read the page again) without asking. Points
// that gave nothing are not asked about again for a minute.
func (s *Service) BackfillRoom(ctx context.Context, roomID string, points []string, limit int) (int, error) {
	unlock := s.backfillLock(roomID)
	defer unlock()
	if len(points) > 0 {
		left, err := s.Rooms.NotInHistory(ctx, points)
		if err != nil {
			return 0, err
		}
		if len(left) == 0 {
			return 1, nil
		}
		points = left
	} else {
		var err error
		if points, err = s.Rooms.BackfillPoints(ctx, roomID); err != nil || len(points) == 0 {
			return 0, err
		}
	}
	key := roomID + "\x00" + strings.Join(points, "\x00")
	if at, ok := s.backfillFailed().Get(key); ok && time.Since(at) < backfillRetry {
		return 0, nil
	}
	n, err := s.backfillFrom(ctx, roomID, points, limit)
	if n == 0 && ctx.Err() == nil { // not when the caller gave up
		s.backfillFailed().Put(key, time.Now())
	}
	return n, err
}

func (s *Service) backfillFailed() *lru.Cache[string, time.Time] {
	s.backfillOnce.Do(func() { s.backfillMisses = lru.New[string, time.Time](10000) })
	return s.backfillMisses
}

func (s *Service) backfillFrom(ctx context.Context, roomID string, points []string, limit int) (int, error) {
	rv, err := s.Rooms.RoomVersion(ctx, roomID)
	if err != nil {
		return 0, err
	}
	servers, err := s.Rooms.ServersInRoom(ctx, roomID)
	if err != nil {
		return 0, err
	}
	limit = min(max(limit, 10), maxBackfillLimit)
	ctx, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	var errs []error
	asked := 0
	for _, dest := range servers {
		if dest == s.ServerName || asked == backfillServers {
			continue
		}
		asked++
		tx, err := s.Client.Backfill(ctx, dest, roomID, points, limit)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dest, err))
			continue
		}
		raws := tx.PDUs
		if len(raws) > limit+len(points) {
			raws = raws[:limit+len(points)]
		}
		got := make([]*event.PDU, 0, len(raws))
		for _, raw := range raws {
			ev, err := s.checkPDU(ctx, rv, raw)
			if err != nil || ev.RoomID != roomID {
				continue // a bad event is left out
			}
			got = append(got, ev)
		}
		n, err := s.Rooms.ImportBackfill(ctx, roomID, got)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dest, err))
			continue
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, errors.Join(errs...)
}

// backfillLock serialises backfilling per room.
func (s *Service) backfillLock(roomID string) func() {
	s.backfillMu.Lock()
	if s.backfilling == nil {
		s.backfilling = map[string]*roomBackfill{}
	}
	b := s.backfilling[roomID]
	if b == nil {
		b = &roomBackfill{}
		s.backfilling[roomID] = b
	}
	b.users++
	s.backfillMu.Unlock()
	b.mu.Lock()
	return func() {
		b.mu.Unlock()
		s.backfillMu.Lock()
		if b.users--; b.users == 0 {
			delete(s.backfilling, roomID)
		}
		s.backfillMu.Unlock()
	}
}

type roomBackfill struct {
	mu    sync.Mutex
	users int
}

// FetchEventAtTimestamp asks the servers in the room (at most 3, 10 s in
// all) for the event closest to ts in the direction given
// (/timestamp_to_event), fetches it (/event) and stores it in the room's
// backfilled history, checked like any backfilled event, so that a client
// can read it and page from it (Server-Server API, timestamp_to_event: "it
// should try to backfill this event"). It reports whether an event was
// found and is now in the history here.
func (s *Service) FetchEventAtTimestamp(ctx context.Context, roomID string, ts int64, backwards bool) (bool, error) {
	rv, err := s.Rooms.RoomVersion(ctx, roomID)
	if err != nil {
		return false, err
	}
	servers, err := s.Rooms.ServersInRoom(ctx, roomID)
	if err != nil {
		return false, err
	}
	dir := "f"
	if backwards {
		dir = "b"
	}
	ctx, cancel := context.WithTimeout(ctx, backfillTimeout)
	defer cancel()
	var errs []error
	asked := 0
	for _, dest := range servers {
		if dest == s.ServerName || asked == backfillServers {
			continue
		}
		asked++
		found, err := s.Client.TimestampToEvent(ctx, dest, roomID, ts, dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dest, err))
			continue
		}
		if have, err := s.Rooms.NotInHistory(ctx, []string{found.EventID}); err == nil && len(have) == 0 {
			return true, nil
		}
		tx, err := s.Client.GetEvent(ctx, dest, found.EventID)
		if err != nil || len(tx.PDUs) != 1 {
			errs = append(errs, fmt.Errorf("%s: fetching %s: %v", dest, found.EventID, err))
			continue
		}
		ev, err := s.checkPDU(ctx, rv, tx.PDUs[0])
		if err != nil || ev.RoomID != roomID || ev.EventID != found.EventID {
			errs = append(errs, fmt.Errorf("%s: %s is not a valid event of the room: %v", dest, found.EventID, err))
			continue
		}
		n, err := s.Rooms.ImportBackfill(ctx, roomID, []*event.PDU{ev})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", dest, err))
			continue
		}
		if n > 0 {
			return true, nil
		}
	}
	return false, errors.Join(errs...)
}
