package accounts

import (
	"context"
	"sync"
	"time"

	"conclave/internal/lru"
	"conclave/internal/store"
)

// Last seen: GET /devices answers each device's last_seen_ts and
// last_seen_ip, which is how a user spots a session that is not theirs (a
// stolen phone still in use). Every authenticated request is a sighting;
// writing each would add a write to every request, so a device's sighting
// is written at most once per seenGranularity unless its address changed
// (Synapse: LAST_SEEN_GRANULARITY, two minutes), and the sightings due are
// written together every seenFlushEvery, in one transaction.
const (
	seenGranularity = 2 * time.Minute
	seenFlushEvery  = 5 * time.Second
	// seenKept bounds the devices whose last written sighting is
	// remembered; one forgotten is written again at its next request.
	seenKept = 100_000
	// seenPendingMax bounds the sightings waiting for a flush; past it,
	// new ones wait for a later request.
	seenPendingMax = 50_000
)

type deviceKey struct{ userID, deviceID string }

type seenRecorder struct {
	mu      sync.Mutex
	written *lru.Cache[deviceKey, store.DeviceSeen] // last sighting written or pending
	pending map[deviceKey]store.DeviceSeen
}

// Seen records a request of the device from ip (server.ClientIP). Cheap:
// at most a map update; the write comes with the next flush (RunSeen).
func (s *Service) Seen(userID, deviceID, ip string) {
	if deviceID == "" {
		return
	}
	now := s.now().UnixMilli()
	k := deviceKey{userID, deviceID}
	r := &s.seen
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	if last, ok := r.written.Get(k); ok && last.IP == ip && now-last.TS < seenGranularity.Milliseconds() {
		return
	}
	if _, queued := r.pending[k]; !queued && len(r.pending) >= seenPendingMax {
		return
	}
	d := store.DeviceSeen{UserID: userID, DeviceID: deviceID, IP: ip, TS: now}
	r.written.Put(k, d)
	r.pending[k] = d
}

// seenWritten records a sighting the store has already (the sign-in's):
// the device's first requests after it need no write of their own.
func (s *Service) seenWritten(d store.DeviceSeen) {
	r := &s.seen
	r.mu.Lock()
	defer r.mu.Unlock()
	r.init()
	r.written.Put(deviceKey{d.UserID, d.DeviceID}, d)
}

func (r *seenRecorder) init() {
	if r.written == nil {
		r.written = lru.New[deviceKey, store.DeviceSeen](seenKept)
		r.pending = map[deviceKey]store.DeviceSeen{}
	}
}

// FlushSeen writes the pending sightings.
func (s *Service) FlushSeen(ctx context.Context) error {
	r := &s.seen
	r.mu.Lock()
	pending := r.pending
	if len(pending) > 0 {
		r.pending = map[deviceKey]store.DeviceSeen{}
	}
	r.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	seen := make([]store.DeviceSeen, 0, len(pending))
	for _, d := range pending {
		seen = append(seen, d)
	}
	err := s.store.TouchDevices(ctx, seen)
	if err != nil {
		// Forgotten, so that each device's next request queues it again.
		r.mu.Lock()
		r.init()
		for k := range pending {
			r.written.Delete(k)
		}
		r.mu.Unlock()
	}
	return err
}

// RunSeen flushes the sightings every seenFlushEvery until ctx ends, then
// once more; onErr hears failed flushes.
func (s *Service) RunSeen(ctx context.Context, onErr func(error)) {
	tick := time.NewTicker(seenFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.FlushSeen(context.WithoutCancel(ctx)); err != nil {
				onErr(err)
			}
			return
		case <-tick.C:
			if err := s.FlushSeen(ctx); err != nil && ctx.Err() == nil {
				onErr(err)
			}
		}
	}
}
