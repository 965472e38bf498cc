package loadtest

import (
	"context"
	"fmt"
	"time"
)

// InitialSyncParams shapes the initial-sync scenario.
type InitialSyncParams struct {
	Ks      []int // room counts to measure
	History int   // messages per room
	Repeats int   // measurements per figure (median reported); default 5
}

// InitialSyncPoint is the figures for one K.
type InitialSyncPoint struct {
	Rooms int `json:"rooms"`
	// Full /sync with no filter, and with an Element-like filter (lazy
	// members, timeline limit 100): median and fastest of the repeats.
	FullMs        float64 `json:"full_ms"`
	FullMinMs     float64 `json:"full_min_ms"`
	FullBytes     int     `json:"full_bytes"`
	FullLazyMs    float64 `json:"full_lazy_ms"`
	FullLazyBytes int     `json:"full_lazy_bytes"`
	// Incremental /sync (timeout 0) with nothing new, and after one new
	// message in one room.
	IncrementalMs       float64 `json:"incremental_ms"`
	IncrementalOneNewMs float64 `json:"incremental_one_new_ms"`
	SetupSeconds        float64 `json:"setup_seconds"`
}

// InitialSyncResult is what the initial-sync scenario measured.
type InitialSyncResult struct {
	Params InitialSyncParams  `json:"params"`
	Points []InitialSyncPoint `json:"points"`
	// GrowthVsLinear: (time at the largest K / time at the smallest K)
	// divided by (largest K / smallest K); at most 1 means no worse than linear.
	GrowthVsLinear float64 `json:"full_growth_vs_linear"`
}

// InitialSync measures /sync for one user in K rooms with history.
func InitialSync(ctx context.Context, c *Config, p InitialSyncParams) (*InitialSyncResult, error) {
	if p.Repeats <= 0 {
		p.Repeats = 5
	}
	res := &InitialSyncResult{Params: p}
	for _, k := range p.Ks {
		pt, err := initialSyncPoint(ctx, c, k, p)
		if err != nil {
			return nil, err
		}
		c.logf("K=%d: full %.1f ms (lazy %.1f ms), incremental %.2f ms", k, pt.FullMs, pt.FullLazyMs, pt.IncrementalMs)
		res.Points = append(res.Points, *pt)
	}
	if n := len(res.Points); n > 1 && res.Points[0].FullMs > 0 {
		a, b := res.Points[0], res.Points[n-1]
		res.GrowthVsLinear = (b.FullMs / a.FullMs) / (float64(b.Rooms) / float64(a.Rooms))
	}
	return res, nil
}

func initialSyncPoint(ctx context.Context, c *Config, k int, p InitialSyncParams) (*InitialSyncPoint, error) {
	setup := time.Now()
	pair, err := c.registerUsers(ctx, fmt.Sprintf("is%d", k), 2)
	if err != nil {
		return nil, err
	}
	user, partner := pair[0], pair[1]
	rooms := make([]string, k)
	err = parallel(ctx, k, c.Parallel, func(ctx context.Context, i int) error {
		id, err := user.CreateRoom(ctx, "private_chat", map[string]any{"name": fmt.Sprintf("room %d", i), "invite": []string{partner.UserID}})
		if err != nil {
			return err
		}
		rooms[i] = id
		if err := partner.Join(ctx, id); err != nil {
			return err
		}
		for m := 0; m < p.History; m++ {
			from := user
			if m%2 == 1 {
				from = partner
			}
			if _, err := from.Send(ctx, id, "m.room.message", fmt.Sprintf("h%d-%d", i, m), map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("history %d in room %d", m, i)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("initial-sync: setting up %d rooms: %w", k, err)
	}
	pt := &InitialSyncPoint{Rooms: k, SetupSeconds: time.Since(setup).Seconds()}
	timed := func(since, filter string) (time.Duration, *SyncResponse, error) {
		t := time.Now()
		r, err := user.Sync(ctx, since, filter, 0)
		return time.Since(t), r, err
	}
	var full, lazy []time.Duration
	var next string
	for i := 0; i < p.Repeats; i++ {
		d, r, err := timed("", "")
		if err != nil {
			return nil, err
		}
		if len(r.Rooms.Join) != k {
			return nil, fmt.Errorf("initial-sync: full sync shows %d joined rooms, want %d", len(r.Rooms.Join), k)
		}
		full = append(full, d)
		pt.FullBytes = r.Bytes
		d, r, err = timed("", lazyFilter)
		if err != nil {
			return nil, err
		}
		lazy = append(lazy, d)
		pt.FullLazyBytes = r.Bytes
		next = r.NextBatch
	}
	pt.FullMs, pt.FullMinMs = median(full), minMs(full)
	pt.FullLazyMs = median(lazy)
	var inc, incNew []time.Duration
	for i := 0; i < p.Repeats*4; i++ {
		d, _, err := timed(next, lazyFilter)
		if err != nil {
			return nil, err
		}
		inc = append(inc, d)
	}
	for i := 0; i < p.Repeats; i++ {
		if _, err := partner.Send(ctx, rooms[i%k], "m.room.message", fmt.Sprintf("new%d", i), map[string]any{"msgtype": "m.text", "body": "new"}); err != nil {
			return nil, err
		}
		d, r, err := timed(next, lazyFilter)
		if err != nil {
			return nil, err
		}
		if len(r.Rooms.Join) != 1 {
			return nil, fmt.Errorf("initial-sync: incremental sync after one message shows %d rooms, want 1", len(r.Rooms.Join))
		}
		next = r.NextBatch
		incNew = append(incNew, d)
	}
	pt.IncrementalMs, pt.IncrementalOneNewMs = median(inc), median(incNew)
	return pt, nil
}

func minMs(d []time.Duration) float64 {
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return ms(m)
}
