package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SlidingSyncParams shapes the sliding-sync scenario.
type SlidingSyncParams struct {
	Rooms   int           // K: rooms of the measured account
	Users   int           // U: users whose connections long-poll idle
	For     time.Duration // how long to measure the idle server's CPU
	Repeats int           // measurements per figure (median reported); default 5
}

// SlidingSyncResult is what the sliding-sync scenario measured.
type SlidingSyncResult struct {
	Params SlidingSyncParams `json:"params"`
	// An account in K rooms, Element X's all_rooms list, range 0–19,
	// timeline_limit 1: a new connection's first response, and the next
	// response after one new message in a room (both as the client sees
	// them, median of the repeats).
	FirstMs       float64      `json:"first_ms"`
	FirstBytes    int          `json:"first_bytes"`
	IncrementalMs float64      `json:"incremental_one_new_ms"`
	SetupSeconds  float64      `json:"setup_seconds"`
	BaselineRSSMB float64      `json:"baseline_rss_mb"`
	FullRSSMB     float64      `json:"full_rss_mb"`
	KBPerClient   float64      `json:"kb_per_idle_connection"`
	ServerCPUPct  float64      `json:"idle_server_cpu_percent"`
	IdleResponses int64        `json:"responses_during_idle"`
	Phase         PhaseFigures `json:"phase"`
}

// slidingBody is what Element X's room list asks (matrix-rust-sdk's room
// list service): one list, a window, timeline_limit 1, its required state.
func slidingBody(end int) map[string]any {
	rs := [][]string{{"m.room.name", ""}, {"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
		{"m.room.topic", ""}, {"m.room.avatar", ""}, {"m.room.canonical_alias", ""}, {"m.room.power_levels", ""},
		{"org.matrix.msc3401.call.member", "*"}, {"m.room.join_rules", ""}, {"m.room.tombstone", ""}, {"m.room.create", ""},
		{"m.room.history_visibility", ""}, {"io.element.functional_members", ""}, {"m.space.parent", "*"}, {"m.space.child", "*"},
		{"org.matrix.msc3672.beacon_info", "*"}}
	return map[string]any{"conn_id": "room-list", "lists": map[string]any{"all_rooms": map[string]any{
		"ranges": [][]int{{0, end}}, "timeline_limit": 1, "required_state": rs}},
		"extensions": map[string]any{"account_data": map[string]any{"enabled": true}, "receipts": map[string]any{"enabled": true},
			"typing": map[string]any{"enabled": true}}}
}

type slidingAnswer struct {
	Pos   string         `json:"pos"`
	Rooms map[string]any `json:"rooms"`
}

// slidingSync posts one simplified sliding sync request.
func (u *User) slidingSync(ctx context.Context, pos string, timeout time.Duration, body any) (*slidingAnswer, int, error) {
	q := url.Values{}
	if pos != "" {
		q.Set("pos", pos)
	}
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	data, err := u.srv.doRaw(ctx, u.Token, "POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?"+q.Encode(), body)
	if err != nil {
		return nil, 0, err
	}
	var a slidingAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, 0, err
	}
	return &a, len(data), nil
}

// SlidingSync measures simplified sliding sync: the first and an
// incremental response for an account in K rooms, and the server's memory
// per idle long-polling connection.
func SlidingSync(ctx context.Context, c *Config, p SlidingSyncParams) (*SlidingSyncResult, error) {
	if c.PID <= 0 {
		return nil, fmt.Errorf("sliding-sync: needs the server's --pid")
	}
	if p.Repeats <= 0 {
		p.Repeats = 5
	}
	res := &SlidingSyncResult{Params: p}
	start := time.Now()
	owners, err := c.registerUsers(ctx, "ss", 1)
	if err != nil {
		return nil, err
	}
	u := owners[0]
	rooms := make([]string, p.Rooms)
	if err := parallel(ctx, p.Rooms, c.Parallel, func(ctx context.Context, i int) error {
		id, err := u.CreateRoom(ctx, "public_chat", map[string]any{"name": fmt.Sprint("Room ", i)})
		if err != nil {
			return err
		}
		rooms[i] = id
		_, err = u.Send(ctx, id, "m.room.message", "first", map[string]any{"msgtype": "m.text", "body": "hello"})
		return err
	}); err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	body := slidingBody(19)
	var firsts, incs []time.Duration
	for i := 0; i < p.Repeats; i++ {
		t0 := time.Now()
		a, n, err := u.slidingSync(ctx, "", 0, body)
		if err != nil {
			return nil, err
		}
		firsts = append(firsts, time.Since(t0))
		res.FirstBytes = n
		if len(a.Rooms) != min(20, p.Rooms) {
			return nil, fmt.Errorf("sliding-sync: the first response has %d rooms, want %d", len(a.Rooms), min(20, p.Rooms))
		}
		room := rooms[i%len(rooms)]
		if _, err := u.Send(ctx, room, "m.room.message", fmt.Sprint("inc", i), map[string]any{"msgtype": "m.text", "body": "new"}); err != nil {
			return nil, err
		}
		t0 = time.Now()
		inc, _, err := u.slidingSync(ctx, a.Pos, 0, body)
		if err != nil {
			return nil, err
		}
		incs = append(incs, time.Since(t0))
		if len(inc.Rooms) != 1 || inc.Rooms[room] == nil {
			return nil, fmt.Errorf("sliding-sync: the incremental response has %d rooms, want the one with the new message", len(inc.Rooms))
		}
	}
	res.FirstMs, res.IncrementalMs = median(firsts), median(incs)
	c.logf("sliding sync, %d rooms: first %.1f ms (%d bytes), incremental %.2f ms", p.Rooms, res.FirstMs, res.FirstBytes, res.IncrementalMs)
	if p.Users < 1 {
		return res, nil
	}

	// Idle connections: users in rooms of up to 20, each long-polling.
	users, err := c.registerUsers(ctx, "ssidle", p.Users)
	if err != nil {
		return nil, err
	}
	for s := 0; s < len(users); s += 20 {
		group := users[s:min(s+20, len(users))]
		id, err := group[0].CreateRoom(ctx, "public_chat", nil)
		if err != nil {
			return nil, err
		}
		if err := parallel(ctx, len(group)-1, c.Parallel, func(ctx context.Context, i int) error { return group[i+1].Join(ctx, id) }); err != nil {
			return nil, err
		}
	}
	pos := make([]string, len(users))
	if err := parallel(ctx, len(users), c.Parallel, func(ctx context.Context, i int) error {
		a, _, err := users[i].slidingSync(ctx, "", 0, body)
		if err == nil {
			pos[i] = a.Pos
		}
		return err
	}); err != nil {
		return nil, err
	}
	settle := func() float64 {
		time.Sleep(3 * time.Second)
		var sum int64
		for i := 0; i < 10; i++ {
			s, _ := ReadProc(c.PID)
			sum += s.RSS
			time.Sleep(100 * time.Millisecond)
		}
		return mb(sum / 10)
	}
	res.BaselineRSSMB = settle()
	pollCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	var responses atomic.Int64
	for i := range users {
		wg.Add(1)
		go func(u *User, pos string) {
			defer wg.Done()
			for pollCtx.Err() == nil {
				a, _, err := u.slidingSync(pollCtx, pos, 30*time.Second, body)
				if err != nil {
					return
				}
				responses.Add(1)
				pos = a.Pos
			}
		}(users[i], pos[i])
	}
	res.FullRSSMB = settle()
	responses.Store(0)
	meter := StartMeter(c.PID)
	select {
	case <-time.After(p.For):
	case <-ctx.Done():
	}
	res.Phase = meter.Stop()
	res.IdleResponses = responses.Load()
	stop()
	wg.Wait()
	res.KBPerClient = (res.FullRSSMB - res.BaselineRSSMB) * 1024 / float64(p.Users)
	res.ServerCPUPct = 100 * res.Phase.ServerCPUSec / res.Phase.Seconds
	c.logf("sliding sync idle: %.1f KB per connection, server CPU %.2f%%", res.KBPerClient, res.ServerCPUPct)
	return res, nil
}
