package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// MessagesParams shapes the messages scenario.
type MessagesParams struct {
	Users    int     // U: users, each long-polling /sync
	Rooms    int     // R
	Members  int     // M per room
	Senders  int     // S concurrent senders (closed loop)
	Messages int     // N
	Rate     float64 // >0: open loop at this many messages/s instead of S closed-loop senders
	Drain    time.Duration
	// Keywords: each user adds one keyword push rule (a content rule)
	// before the run, so the server evaluates non-default rules.
	Keywords bool
}

// MessagesResult is what the messages scenario measured.
type MessagesResult struct {
	Params         MessagesParams `json:"params"`
	Accepted       int            `json:"accepted"`
	Failed         int            `json:"failed"`
	SendSeconds    float64        `json:"send_seconds"`
	AcceptedPerSec float64        `json:"accepted_per_second"`
	SendLatency    Summary        `json:"send_latency"`
	// Delivery: from the start of the send to the event's arrival in the
	// /sync of the last of the room's members (the sender included).
	Delivery             Summary `json:"delivery_latency_all_members"`
	DeliveredToAll       int     `json:"delivered_to_all"`
	Undelivered          int     `json:"undelivered"`
	DuplicateDeliveries  int64   `json:"duplicate_deliveries"`
	LimitedTimelines     int64   `json:"limited_timelines"`
	SyncResponses        int64   `json:"sync_responses"`
	ServerCPUPer1000Msgs float64 `json:"server_cpu_seconds_per_1000_messages,omitempty"`
	// The same with the database server's CPU added (PostgreSQL).
	ServerAndDatabaseCPUPer1000Msgs float64      `json:"server_and_database_cpu_seconds_per_1000_messages,omitempty"`
	Phase                           PhaseFigures `json:"phase"`
	// PeerPhase: the second server's figures (federation scenario).
	PeerPhase *PhaseFigures `json:"peer_phase,omitempty"`
	// ServersCPUPer1000Msgs: both servers' CPU (federation scenario).
	ServersCPUPer1000Msgs float64 `json:"both_servers_cpu_seconds_per_1000_messages,omitempty"`
}

// Messages runs the messages scenario: U users in R rooms of M members each
// long-poll /sync while messages are sent; every message is tracked until
// every member of its room has seen it in /sync.
func Messages(ctx context.Context, c *Config, p MessagesParams) (*MessagesResult, error) {
	if p.Users < p.Members || p.Rooms < 1 || p.Members < 1 || p.Messages < 1 {
		return nil, fmt.Errorf("messages: need users >= members >= 1, rooms >= 1, messages >= 1")
	}
	users, err := c.registerUsers(ctx, "msg", p.Users)
	if err != nil {
		return nil, err
	}
	if p.Keywords {
		err = parallel(ctx, len(users), c.Parallel, func(ctx context.Context, i int) error {
			kw := fmt.Sprintf("keyword%d", i)
			return users[i].Do(ctx, "PUT", "/_matrix/client/v3/pushrules/global/content/"+kw, map[string]any{
				"pattern": kw, "actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}, nil)
		})
		if err != nil {
			return nil, fmt.Errorf("messages: keyword rules: %w", err)
		}
	}
	// Room r holds users (r*M + i) mod U: with the defaults every user is
	// in R*M/U = 2 rooms.
	rooms := make([]string, p.Rooms)
	members := make([][]int, p.Rooms)
	memberOf := make([][]int, p.Users) // user -> rooms
	for r := range rooms {
		for i := 0; i < p.Members; i++ {
			u := (r*p.Members + i) % p.Users
			members[r] = append(members[r], u)
			memberOf[u] = append(memberOf[u], r)
		}
	}
	start := time.Now()
	err = parallel(ctx, p.Rooms, c.Parallel, func(ctx context.Context, r int) error {
		id, err := users[members[r][0]].CreateRoom(ctx, "public_chat", nil)
		if err != nil {
			return err
		}
		rooms[r] = id
		creator := users[members[r][0]].UserID
		for _, u := range members[r][1:] {
			if err := users[u].JoinVia(ctx, id, creator); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("messages: creating rooms: %w", err)
	}
	c.logf("created %d rooms of %d members in %s", p.Rooms, p.Members, time.Since(start).Round(time.Millisecond))
	tokens, err := c.initialSync(ctx, users, lazyFilter)
	if err != nil {
		return nil, fmt.Errorf("messages: initial sync: %w", err)
	}

	res := &MessagesResult{Params: p}
	sendStart := make([]atomic.Int64, p.Messages) // unix ns
	remaining := make([]atomic.Int32, p.Messages)
	deliveredAt := make([]atomic.Int64, p.Messages)
	for i := range remaining {
		remaining[i].Store(int32(p.Members))
	}
	var delivered atomic.Int64
	allDelivered := make(chan struct{})
	var closeOnce sync.Once
	closeAll := func() { closeOnce.Do(func() { close(allDelivered) }) }
	var dups, limited, responses atomic.Int64

	// Every user long-polls /sync until the run ends.
	syncCtx, stopSync := context.WithCancel(ctx)
	defer stopSync()
	var syncWG sync.WaitGroup
	syncErrs := make(chan error, p.Users)
	for i, u := range users {
		syncWG.Add(1)
		go func(u *User, since string) {
			defer syncWG.Done()
			seen := make([]bool, p.Messages)
			for syncCtx.Err() == nil {
				r, err := u.Sync(syncCtx, since, lazyFilter, 30*time.Second)
				if err != nil {
					if syncCtx.Err() == nil {
						syncErrs <- fmt.Errorf("%s sync: %w", u.UserID, err)
					}
					return
				}
				now := time.Now().UnixNano()
				responses.Add(1)
				since = r.NextBatch
				for _, jr := range r.Rooms.Join {
					if jr.Timeline.Limited {
						limited.Add(1)
					}
					for _, ev := range jr.Timeline.Events {
						if ev.Content.Seq == nil {
							continue
						}
						seq := *ev.Content.Seq
						if seq < 0 || seq >= int64(p.Messages) {
							continue
						}
						if seen[seq] {
							dups.Add(1)
							continue
						}
						seen[seq] = true
						if remaining[seq].Add(-1) == 0 {
							deliveredAt[seq].Store(now)
							if delivered.Add(1) == int64(p.Messages) {
								closeAll()
							}
						}
					}
				}
			}
		}(u, tokens[i])
	}
	// Let every long-poll reach the server before the clock starts.
	time.Sleep(500 * time.Millisecond)

	c.logf("sending %d messages", p.Messages)
	meter := StartMeter(c.PID)
	var peerMeter *Meter
	if c.Peer != nil {
		peerMeter = StartMeter(c.PeerPID)
	}
	var sendLat Latencies
	var failed atomic.Int64
	var lastErr atomic.Value
	send := func(ctx context.Context, seq int, planned time.Time) {
		r := seq % p.Rooms
		sender := users[members[r][(seq/p.Rooms)%p.Members]]
		sendStart[seq].Store(planned.UnixNano())
		_, err := sender.Send(ctx, rooms[r], "m.room.message", fmt.Sprintf("%s-%d", c.Prefix, seq), map[string]any{
			"msgtype": "m.text", "body": fmt.Sprintf("load message %d", seq), "org.conclave.load.seq": seq,
		})
		if err != nil {
			failed.Add(1)
			lastErr.Store(err)
			// A refused message is never delivered: stop waiting for it.
			if delivered.Add(1) == int64(p.Messages) {
				closeAll()
			}
			return
		}
		sendLat.Add(time.Since(planned))
	}
	t0 := time.Now()
	if p.Rate > 0 {
		// Open loop: message k is due at t0 + k/rate whatever happened to
		// earlier ones; latency counts from when it was due, so a slow
		// server cannot hide queueing (no coordinated omission).
		var wg sync.WaitGroup
		sem := make(chan struct{}, 512)
		for seq := 0; seq < p.Messages && ctx.Err() == nil; seq++ {
			due := t0.Add(time.Duration(float64(seq) / p.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(seq int) {
				defer func() { <-sem; wg.Done() }()
				send(ctx, seq, due)
			}(seq)
		}
		wg.Wait()
	} else {
		// Closed loop: each sender sends its next message as soon as the
		// previous one is accepted; sender s stays in room s mod R.
		var next atomic.Int64
		var wg sync.WaitGroup
		for s := 0; s < p.Senders; s++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					seq := int(next.Add(1) - 1)
					if seq >= p.Messages {
						return
					}
					send(ctx, seq, time.Now())
				}
			}()
		}
		wg.Wait()
	}
	sendDur := time.Since(t0)
	res.Failed = int(failed.Load())
	res.Accepted = p.Messages - res.Failed
	res.SendSeconds = sendDur.Seconds()
	res.AcceptedPerSec = float64(res.Accepted) / sendDur.Seconds()
	c.logf("sent in %s (%d failed); waiting for delivery", sendDur.Round(time.Millisecond), res.Failed)
	if res.Failed > 0 {
		c.logf("last send error: %v", lastErr.Load())
	}
	select {
	case <-allDelivered:
	case <-time.After(p.Drain):
	case err := <-syncErrs:
		stopSync()
		return nil, err
	case <-ctx.Done():
	}
	res.Phase = meter.Stop()
	var peerPhase PhaseFigures
	if peerMeter != nil {
		peerPhase = peerMeter.Stop()
	}
	stopSync()
	syncWG.Wait()

	var del []time.Duration
	for seq := range deliveredAt {
		if at := deliveredAt[seq].Load(); at != 0 {
			del = append(del, time.Duration(at-sendStart[seq].Load()))
		}
	}
	res.DeliveredToAll = len(del)
	res.Undelivered = res.Accepted - len(del)
	res.Delivery = summarize(del)
	res.SendLatency = sendLat.Summary()
	res.DuplicateDeliveries = dups.Load()
	res.LimitedTimelines = limited.Load()
	res.SyncResponses = responses.Load()
	if peerMeter != nil {
		pf := peerPhase
		res.PeerPhase = &pf
		if c.PID > 0 && c.PeerPID > 0 && res.Accepted > 0 {
			res.ServersCPUPer1000Msgs = (res.Phase.ServerCPUSec + pf.ServerCPUSec) / (float64(res.Accepted) / 1000)
		}
	}
	if c.PID > 0 && res.Accepted > 0 {
		res.ServerCPUPer1000Msgs = res.Phase.ServerCPUSec / (float64(res.Accepted) / 1000)
		if res.Phase.DatabaseCPUSec > 0 {
			res.ServerAndDatabaseCPUPer1000Msgs = (res.Phase.ServerCPUSec + res.Phase.DatabaseCPUSec) / (float64(res.Accepted) / 1000)
		}
	}
	return res, nil
}
