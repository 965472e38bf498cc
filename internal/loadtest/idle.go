package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// IdleParams shapes the idle scenario.
type IdleParams struct {
	Users int           // U: users that long-poll
	For   time.Duration // how long to measure at full load
}

// IdleResult is what the idle scenario measured.
type IdleResult struct {
	Params IdleParams `json:"params"`
	// Server RSS with nobody polling, with half the users and with all of
	// them long-polling.
	BaselineRSSMB float64 `json:"baseline_rss_mb"`
	HalfRSSMB     float64 `json:"half_rss_mb"`
	FullRSSMB     float64 `json:"full_rss_mb"`
	// (full - baseline) / U, and the marginal (full - half) / (U/2).
	KBPerClient         float64 `json:"kb_per_client"`
	MarginalKBPerClient float64 `json:"marginal_kb_per_client"`
	// Server CPU while all U long-poll and nothing happens.
	ServerCPUPercent float64      `json:"server_cpu_percent"`
	SyncResponses    int64        `json:"sync_responses_during_idle"`
	Phase            PhaseFigures `json:"phase"`
}

// Idle measures the server's memory per long-polling client and its CPU
// when nothing happens.
func Idle(ctx context.Context, c *Config, p IdleParams) (*IdleResult, error) {
	if c.PID <= 0 {
		return nil, fmt.Errorf("idle: needs the server's --pid")
	}
	if p.Users < 2 {
		return nil, fmt.Errorf("idle: need at least 2 users")
	}
	users, err := c.registerUsers(ctx, "idle", p.Users)
	if err != nil {
		return nil, err
	}
	// Rooms of up to 20, so each user's sync has something to look at.
	for start := 0; start < len(users); start += 20 {
		group := users[start:min(start+20, len(users))]
		id, err := group[0].CreateRoom(ctx, "public_chat", nil)
		if err != nil {
			return nil, err
		}
		if err := parallel(ctx, len(group)-1, c.Parallel, func(ctx context.Context, i int) error { return group[i+1].Join(ctx, id) }); err != nil {
			return nil, err
		}
	}
	tokens, err := c.initialSync(ctx, users, lazyFilter)
	if err != nil {
		return nil, err
	}
	res := &IdleResult{Params: p}
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
	poll := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Add(1)
			go func(u *User, since string) {
				defer wg.Done()
				for pollCtx.Err() == nil {
					r, err := u.Sync(pollCtx, since, lazyFilter, 30*time.Second)
					if err != nil {
						return
					}
					responses.Add(1)
					since = r.NextBatch
				}
			}(users[i], tokens[i])
		}
	}
	half := p.Users / 2
	poll(0, half)
	res.HalfRSSMB = settle()
	poll(half, p.Users)
	res.FullRSSMB = settle()
	responses.Store(0)
	meter := StartMeter(c.PID)
	select {
	case <-time.After(p.For):
	case <-ctx.Done():
	}
	res.Phase = meter.Stop()
	res.SyncResponses = responses.Load()
	stop()
	wg.Wait()
	res.KBPerClient = (res.FullRSSMB - res.BaselineRSSMB) * 1024 / float64(p.Users)
	res.MarginalKBPerClient = (res.FullRSSMB - res.HalfRSSMB) * 1024 / float64(p.Users-half)
	res.ServerCPUPercent = 100 * res.Phase.ServerCPUSec / res.Phase.Seconds
	c.logf("idle: %.1f KB per client (marginal %.1f), server CPU %.2f%%", res.KBPerClient, res.MarginalKBPerClient, res.ServerCPUPercent)
	return res, nil
}
