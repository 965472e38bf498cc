package loadtest

import (
	"context"
	"fmt"
	"time"
)

// JoinLargeRoomParams shapes the join-large-room scenario.
type JoinLargeRoomParams struct {
	Members   int // L: members before the newcomers join
	Newcomers int // per filter kind; default 3, median reported
}

// JoinFigures is one newcomer kind's figures (medians).
type JoinFigures struct {
	JoinMs float64 `json:"join_ms"`
	// FirstJoinMs and FirstTotalMs are the first newcomer's: with a peer
	// server, the join that brings the room there over federation (the
	// others then join a room their server is in).
	FirstJoinMs   float64 `json:"first_join_ms"`
	FirstTotalMs  float64 `json:"first_total_ms"`
	FirstSyncMs   float64 `json:"first_sync_ms"`
	TotalMs       float64 `json:"total_ms"`
	StateEvents   int     `json:"state_events_in_first_sync"`
	FirstSyncSize int     `json:"first_sync_bytes"`
}

// JoinLargeRoomResult is what the join-large-room scenario measured.
type JoinLargeRoomResult struct {
	Params       JoinLargeRoomParams `json:"params"`
	SetupSeconds float64             `json:"setup_seconds"`
	// Lazy: the newcomer's /sync filter lazy-loads members (Element's
	// default); Full: no filter, every member event in the state.
	Lazy JoinFigures `json:"lazy_members"`
	Full JoinFigures `json:"full_state"`
}

// JoinLargeRoom measures a newcomer's join of a room with L members and the
// first /sync that shows it.
func JoinLargeRoom(ctx context.Context, c *Config, p JoinLargeRoomParams) (*JoinLargeRoomResult, error) {
	if p.Members < 2 {
		return nil, fmt.Errorf("join-large-room: need at least 2 members")
	}
	if p.Newcomers <= 0 {
		p.Newcomers = 3
	}
	setup := time.Now()
	// The room's members on Server; with a Peer, the newcomers join it
	// from there, over federation.
	users, err := c.registerOn(ctx, c.Server, "big", p.Members)
	if err != nil {
		return nil, err
	}
	roomID, err := users[0].CreateRoom(ctx, "public_chat", map[string]any{"name": "large room"})
	if err != nil {
		return nil, err
	}
	err = parallel(ctx, p.Members-1, c.Parallel, func(ctx context.Context, i int) error {
		return users[i+1].Join(ctx, roomID)
	})
	if err != nil {
		return nil, fmt.Errorf("join-large-room: joining members: %w", err)
	}
	for i := 0; i < 20; i++ {
		if _, err := users[i%len(users)].Send(ctx, roomID, "m.room.message", fmt.Sprintf("big%d", i), map[string]any{"msgtype": "m.text", "body": "hello"}); err != nil {
			return nil, err
		}
	}
	res := &JoinLargeRoomResult{Params: p, SetupSeconds: time.Since(setup).Seconds()}
	c.logf("room of %d members ready in %s", p.Members, time.Since(setup).Round(time.Millisecond))
	measure := func(tag, filter string) (JoinFigures, error) {
		var f JoinFigures
		on := c.Server
		if c.Peer != nil {
			on = c.Peer
		}
		newcomers, err := c.registerOn(ctx, on, tag, p.Newcomers)
		if err != nil {
			return f, err
		}
		var joins, syncs, totals []time.Duration
		for _, u := range newcomers {
			r, err := u.Sync(ctx, "", filter, 0)
			if err != nil {
				return f, err
			}
			since := r.NextBatch
			t0 := time.Now()
			if err := u.JoinVia(ctx, roomID, users[0].UserID); err != nil {
				return f, err
			}
			t1 := time.Now()
			for {
				r, err = u.Sync(ctx, since, filter, 10*time.Second)
				if err != nil {
					return f, err
				}
				since = r.NextBatch
				if jr, ok := r.Rooms.Join[roomID]; ok {
					f.StateEvents = len(jr.State.Events)
					f.FirstSyncSize = r.Bytes
					break
				}
				if time.Since(t1) > time.Minute {
					return f, fmt.Errorf("join-large-room: the joined room did not appear in /sync within a minute")
				}
			}
			t2 := time.Now()
			joins, syncs, totals = append(joins, t1.Sub(t0)), append(syncs, t2.Sub(t1)), append(totals, t2.Sub(t0))
		}
		f.JoinMs, f.FirstSyncMs, f.TotalMs = median(joins), median(syncs), median(totals)
		f.FirstJoinMs, f.FirstTotalMs = ms(joins[0]), ms(totals[0])
		return f, nil
	}
	if res.Lazy, err = measure("bignl", lazyFilter); err != nil {
		return nil, err
	}
	if res.Full, err = measure("bignf", ""); err != nil {
		return nil, err
	}
	c.logf("join %0.1f ms + first sync %.1f ms (lazy); %.1f + %.1f ms (full state)", res.Lazy.JoinMs, res.Lazy.FirstSyncMs, res.Full.JoinMs, res.Full.FirstSyncMs)
	return res, nil
}
