// Package retention owns message retention (MSC1763, as Synapse implements
// it): the policy that applies to each room (its m.room.retention state
// event, else the server's default, kept within the server's allowed
// range) and the background job that purges the events whose lifetime has
// ended.
//
// What a purge does, and does not (docs/rules.md, "Retention"):
//   - only non-state timeline, backfilled and soft-failed events are
//     purged (rejected ones are never used nor served), never a
//     state event nor one of the room's forward extremities (Synapse keeps
//     both: state resolves the graph, the latest events are what new events
//     cite);
//   - a purged event keeps its row (store.KindPurged) with its redacted
//     JSON: prev_events, auth_events, depth, hashes and signatures, no
//     content. Newer events' prev_events still meet a known event, so
//     nothing is fetched again from other servers and the graph stays
//     whole; its search entry, relation, transaction ID and notifications
//     are removed;
//   - clients see purged history as gone (/messages, /sync, /context,
//     /event, search, relations read timeline and backfilled events only),
//     and other servers are never given a purged event (/event is 404,
//     /backfill and /get_missing_events stop at it).
//
// min_lifetime is read and has no effect, as with Synapse (which only
// registers it). Media referenced by purged events is not deleted: see
// docs/rules.md.
package retention

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"time"

	"conclave/internal/event"
	"conclave/internal/store"
)

// Config is the server's retention settings.
type Config struct {
	// DefaultMaxLifetime applies to rooms without a max_lifetime of their
	// own; 0: such rooms keep their history.
	DefaultMaxLifetime time.Duration
	// AllowedMin and AllowedMax bound the lifetime a room may ask for (0: no
	// bound). As Synapse, a room's max_lifetime outside them is not refused;
	// the purge uses the nearest bound instead.
	AllowedMin, AllowedMax time.Duration
	// Interval between purge runs.
	Interval time.Duration
}

// Rooms is what the job needs of the room service.
type Rooms interface {
	RoomVersion(ctx context.Context, roomID string) (*event.RoomVersion, error)
	// ForgetPurged drops what is kept in memory of purged events.
	ForgetPurged(roomID string, ids []string)
}

// Service runs the purges.
type Service struct {
	store store.Retention
	rooms Rooms
	cfg   Config
	log   *slog.Logger
}

// New returns the retention service.
func New(st store.Retention, rooms Rooms, cfg Config, log *slog.Logger) *Service {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Hour
	}
	return &Service{store: st, rooms: rooms, cfg: cfg, log: log}
}

// Batch sizes: rooms listed per query, events purged per transaction (a
// transaction holds the room's writer lock and, on SQLite, the one writer
// connection: kept short).
const (
	roomsPerPage   = 500
	eventsPerBatch = 500
)

// Policy is a room's m.room.retention content, milliseconds (0: absent).
type Policy struct {
	MaxLifetime, MinLifetime int64
}

// ParsePolicy reads an m.room.retention event's content. A value that is not
// a positive integer counts as absent (Synapse refuses such events from its
// own clients and ignores them otherwise).
func ParsePolicy(pdu []byte) Policy {
	var ev struct {
		Content struct {
			MaxLifetime json.RawMessage `json:"max_lifetime"`
			MinLifetime json.RawMessage `json:"min_lifetime"`
		} `json:"content"`
	}
	if json.Unmarshal(pdu, &ev) != nil {
		return Policy{}
	}
	return Policy{MaxLifetime: positiveInt(ev.Content.MaxLifetime), MinLifetime: positiveInt(ev.Content.MinLifetime)}
}

func positiveInt(raw json.RawMessage) int64 {
	var n int64
	if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &n) != nil || n <= 0 {
		return 0
	}
	return n
}

// Lifetime is how long events of a room with policy p are kept (0: for
// ever): the room's max_lifetime, else the server default, within the
// allowed range.
func (s *Service) Lifetime(p Policy) time.Duration {
	d := s.cfg.DefaultMaxLifetime
	if p.MaxLifetime > 0 {
		d = time.Duration(min(p.MaxLifetime, math.MaxInt64/int64(time.Millisecond))) * time.Millisecond
	}
	if d <= 0 {
		return 0
	}
	if s.cfg.AllowedMin > 0 && d < s.cfg.AllowedMin {
		d = s.cfg.AllowedMin
	}
	if s.cfg.AllowedMax > 0 && d > s.cfg.AllowedMax {
		d = s.cfg.AllowedMax
	}
	return d
}

// Run purges every Interval until ctx ends, starting now.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := s.RunAt(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.log.Warn("retention: purge run failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Result is what one run did.
type Result struct {
	Rooms  int // rooms with a lifetime
	Purged int // events purged
}

// RunAt purges, in every room, the events that expired by now (the clock is
// the caller's, so tests need no sleep).
func (s *Service) RunAt(ctx context.Context, now time.Time) (Result, error) {
	var res Result
	after := ""
	for {
		rooms, err := s.store.RetentionRooms(ctx, after, roomsPerPage)
		if err != nil {
			return res, err
		}
		for _, r := range rooms {
			var p Policy
			if r.Policy != nil {
				p = ParsePolicy(r.Policy)
			}
			life := s.Lifetime(p)
			if life <= 0 {
				continue
			}
			res.Rooms++
			n, err := s.PurgeRoom(ctx, r.RoomID, now.Add(-life))
			res.Purged += n
			if err != nil {
				return res, fmt.Errorf("room %s: %w", r.RoomID, err)
			}
		}
		if len(rooms) < roomsPerPage {
			return res, nil
		}
		after = rooms[len(rooms)-1].RoomID
	}
}

// PurgeRoom purges the room's events sent before `before`, in batches, and
// returns how many it purged.
func (s *Service) PurgeRoom(ctx context.Context, roomID string, before time.Time) (int, error) {
	rv, err := s.rooms.RoomVersion(ctx, roomID)
	if err != nil {
		return 0, err
	}
	cut := before.UnixMilli()
	total := 0
	afterTS, afterPos := int64(math.MinInt64), int64(0)
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		evs, err := s.store.ExpiredEvents(ctx, roomID, cut, afterTS, afterPos, eventsPerBatch)
		if err != nil || len(evs) == 0 {
			return total, err
		}
		batch := make([]store.PurgedEvent, 0, len(evs))
		ids := make([]string, 0, len(evs))
		for _, e := range evs {
			red, err := event.Redact(rv, e.JSON)
			if err != nil {
				// Stored events were checked when they came; one that cannot
				// be read is left whole rather than the run stopped.
				s.log.Warn("retention: cannot redact a stored event", "room", roomID, "event", e.EventID, "err", err)
				continue
			}
			batch = append(batch, store.PurgedEvent{EventID: e.EventID, JSON: red})
			ids = append(ids, e.EventID)
		}
		n, err := s.store.PurgeEvents(ctx, roomID, batch)
		if err != nil {
			return total, err
		}
		total += n
		s.rooms.ForgetPurged(roomID, ids)
		last := evs[len(evs)-1]
		afterTS, afterPos = last.TS, last.Pos
		if len(evs) < eventsPerBatch {
			return total, nil
		}
	}
}
