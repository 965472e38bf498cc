// Package fedsender owns durable outbound delivery to other servers: a
// queue per destination in the store (store.FedQueue, migration 0015), sent
// as transactions of at most 50 PDUs and 100 EDUs
// (PUT /_matrix/federation/v1/send/{txnId}), in queue order, with capped
// exponential back-off on failure, woken at once when the destination talks
// to us again (Wake).
//
// Durability: Enqueue returns only after the items are committed, and items
// leave the store only after the destination acknowledged the transaction
// carrying them, so a SIGKILL loses nothing Enqueue acknowledged; on Run
// every destination with queued items is resumed (after its persisted
// back-off). An item that must commit together with another change (a
// to-device EDU with the client's transaction ID, which makes a retry a
// no-op) is built by Entry, written by that change's store method in its
// transaction, and woken by Committed.
//
// Transaction IDs: a failed attempt records its transaction ID and items in
// the store (the destination's pending transaction), and every retry sends
// exactly those items still queued under the same ID, so a receiver that
// processed the first attempt recognises the retry (spec: Server-Server API,
// "Transactions": the transaction ID lets the receiver detect duplicates).
// An attempt interrupted by a crash before its failure was recorded is sent
// again under a new ID: the receiver dedupes its PDUs by event ID.
//
// Isolation: each destination with work has its own goroutine (at most
// MaxWorkers at once; others wait their turn), and each attempt has its own
// timeout, so a dead destination never delays the others. A destination
// with nothing to send, or in back-off, holds no goroutine: back-offs wait
// in one timer heap.
//
// Several processes (PostgreSQL): a process sends to a destination only
// while it holds the destination's lock (store.FedLocker: a session advisory
// lock; it dies with the process). No bus message is needed to wake the
// owner: Enqueue commits, then tries the lock; if another process holds it,
// that process is sending and reads the queue again after releasing the lock
// (release, then look), so it either sees the new items or this process gets
// the lock. Back-off state is in the store, read under the lock. A slow
// safety tick (SafetyTick, 30 s) rescans the queues: it finds destinations
// whose owner died, and everything at start.
//
// Back-pressure: when a destination's queue holds more than MaxQueue items
// (100,000) its oldest EDUs are dropped, except to-device messages; PDUs
// and to-device messages are never dropped. The cap is enforced after each
// failed attempt and on the safety tick for destinations in back-off that
// received items since.
package fedsender

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/store"
)

// The transaction limits (spec: Server-Server API, "Transactions").
const (
	MaxPDUsPerTxn = 50
	MaxEDUsPerTxn = 100
)

// Transport sends one transaction.
type Transport interface {
	// SendTransaction PUTs /_matrix/federation/v1/send/{txnID} to dest with
	// body ({origin, origin_server_ts, pdus, edus}) and returns the
	// destination's result per PDU (event ID → its error, "" when
	// processed). An error means the whole transaction must be retried
	// (unreachable, timed out, or not a 200).
	SendTransaction(ctx context.Context, dest, txnID string, body []byte) (map[string]string, error)
}

// Options configure a Sender; zero fields take the defaults.
type Options struct {
	// Origin is our server name.
	Origin string
	// MinBackoff is the first retry delay (5 s), doubled per failure, each
	// with ±20 % jitter, at most MaxBackoff (1 h).
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout bounds one attempt (60 s).
	SendTimeout time.Duration
	// SafetyTick is how often the queues are rescanned (30 s).
	SafetyTick time.Duration
	// MaxQueue is the per-destination queue cap beyond which droppable
	// EDUs go (100,000).
	MaxQueue int
	// MaxWorkers bounds the destinations being sent to at once (1024).
	MaxWorkers int
	// Log receives delivery failures and rejected PDUs (slog.Default()).
	Log *slog.Logger
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.MinBackoff <= 0 {
		o.MinBackoff = 5 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Hour
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = 60 * time.Second
	}
	if o.SafetyTick <= 0 {
		o.SafetyTick = 30 * time.Second
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 100_000
	}
	if o.MaxWorkers <= 0 {
		o.MaxWorkers = 1024
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Sender delivers queued PDUs and EDUs.
type Sender struct {
	st     store.FedQueue
	locker store.FedLocker // nil: this process is the database's only user
	tr     Transport
	o      Options

	// txnPrefix makes this Sender's transaction IDs unique among all
	// transactions this server ever sends (with txnSeq).
	txnPrefix string
	txnSeq    atomic.Uint64

	enq       grouper[store.FedEnqueue]
	delivered grouper[store.FedDone]

	mu      sync.Mutex
	ctx     context.Context // Run's; nil before Run
	dests   map[string]*dest
	timers  timerHeap
	ready   []*dest // due, waiting for a worker slot
	active  int     // workers running
	rearm   chan struct{}
	workers sync.WaitGroup
	// woken rate-limits Wake's store write per destination not known to be
	// in back-off here (another process may have it in back-off).
	woken map[string]time.Time

	// Delivered counts the PDUs and EDUs destinations acknowledged.
	Delivered atomic.Int64

	// garbage holds the entries delivered since the last FedCollect: their
	// payloads go once no destination's queue holds them.
	gmu     sync.Mutex
	garbage []int64

	// Test hooks (export_test.go). afterAttempt is called when an attempt
	// and its bookkeeping are done (err: the transport's); idleLocked when
	// a worker holding a destination's lock found its queue empty, before
	// it releases the lock; lockBusy when another process held the lock;
	// afterPrune when the queue cap was enforced.
	afterAttempt func(dest string, err error)
	idleLocked   func(dest string)
	lockBusy     func(dest string)
	afterPrune   func(dest string, dropped int)
}

// dest is a destination this process is sending to or will retry.
type dest struct {
	name    string
	running bool // a worker owns it (or waits in ready)
	again   bool // items were enqueued while running: look again before stopping
	dirty   bool // items were enqueued during back-off: check the cap
	woken   bool // Wake: the next worker resets the persisted back-off
	at      time.Time
	idx     int // in timers; -1 when not scheduled
}

// New returns a Sender over st; if st is also a store.FedLocker (several
// processes may share it) sending to a destination takes its lock.
func New(st store.FedQueue, tr Transport, o Options) *Sender {
	o.defaults()
	var b [6]byte
	rand.Read(b[:])
	s := &Sender{st: st, tr: tr, o: o, txnPrefix: hex.EncodeToString(b[:]), dests: map[string]*dest{},
		rearm: make(chan struct{}, 1), woken: map[string]time.Time{}}
	s.locker, _ = st.(store.FedLocker)
	s.enq.commitFn = func(ctx context.Context, items []store.FedEnqueue) error { return st.FedEnqueue(ctx, items) }
	s.delivered.commitFn = func(ctx context.Context, done []store.FedDone) error {
		return st.FedDelivered(ctx, done, s.o.Now().UnixMilli())
	}
	return s
}

// Enqueue queues item for every destination in dests (our own server, if
// listed, is left out) and returns once that is committed: from then on it
// survives a crash and goes out in order with everything queued before it
// for each destination. Concurrent calls share one transaction.
func (s *Sender) Enqueue(ctx context.Context, dests []string, item Item) error {
	if !item.valid() || !json.Valid(item.it.JSON) {
		return errBadItem
	}
	if slices.Contains(dests, s.o.Origin) {
		dests = slices.DeleteFunc(slices.Clone(dests), func(d string) bool { return d == s.o.Origin })
	}
	if len(dests) == 0 {
		return nil
	}
	if err := s.enq.add(store.FedEnqueue{Destinations: dests, Item: item.it}); err != nil {
		return err
	}
	s.notify(dests)
	return nil
}

// EnqueuePDU is Enqueue of PDU(eventID, pdu) (federation.Outbox).
func (s *Sender) EnqueuePDU(ctx context.Context, dests []string, eventID string, pdu []byte) error {
	return s.Enqueue(ctx, dests, PDU(eventID, pdu))
}

// EnqueueEDU is Enqueue of EDU(eduType, content).
func (s *Sender) EnqueueEDU(ctx context.Context, dests []string, eduType string, content []byte) error {
	return s.Enqueue(ctx, dests, EDU(eduType, content))
}

// Entry returns item for dests as a queue entry that another store write
// commits in its own transaction, together with the change it belongs to
// (e.g. store.Keys.SendToDevice: to-device messages and the transaction ID
// that makes a retry a no-op), so that neither commits without the other.
// Our own server is left out of dests; ok is false when none remains.
// Once that write committed, call Committed: nothing is sent before (or
// before the next safety tick).
func (s *Sender) Entry(dests []string, item Item) (e store.FedEnqueue, ok bool, err error) {
	if !item.valid() || !json.Valid(item.it.JSON) {
		return e, false, errBadItem
	}
	dests = slices.DeleteFunc(slices.Clone(dests), func(d string) bool { return d == s.o.Origin })
	if len(dests) == 0 {
		return e, false, nil
	}
	return store.FedEnqueue{Destinations: dests, Item: item.it}, true, nil
}

// EDUEntry is Entry of EDU(eduType, content) (federation.Outbox).
func (s *Sender) EDUEntry(dests []string, eduType string, content []byte) (store.FedEnqueue, bool, error) {
	return s.Entry(dests, EDU(eduType, content))
}

// Committed starts sending to dests, for which items were committed by
// another write than Enqueue (Entry). For a destination with nothing
// queued it costs one look at its queue, so a caller unsure whether its
// write committed (a retried request) may call it anyway.
func (s *Sender) Committed(dests []string) {
	dests = slices.DeleteFunc(slices.Clone(dests), func(d string) bool { return d == s.o.Origin })
	if len(dests) > 0 {
		s.notify(dests)
	}
}

// notify starts sending to dests (items were just committed for them).
func (s *Sender) notify(dests []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return // Run finds them in the store
	}
	for _, name := range dests {
		d := s.dests[name]
		switch {
		case d == nil:
			d = &dest{name: name, idx: -1}
			s.dests[name] = d
			s.startLocked(d)
		case d.running:
			d.again = true
		default: // in back-off
			d.dirty = true
		}
	}
}

// Wake is called when dest sent us something: it is up, so its back-off
// ends and whatever is queued for it goes now (after the attempt in
// flight, if any).
func (s *Sender) Wake(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return
	}
	d := s.dests[name]
	if d == nil {
		// Not known here: nothing may be queued, or another process has
		// it in back-off. Look at most once per SafetyTick.
		now := s.o.Now()
		if t, ok := s.woken[name]; ok && now.Sub(t) < s.o.SafetyTick {
			return
		}
		s.woken[name] = now
		d = &dest{name: name, idx: -1}
		s.dests[name] = d
	}
	d.woken = true
	if !d.running {
		s.unscheduleLocked(d)
		s.startLocked(d)
	}
}

// Run sends until ctx ends, then waits for the attempts in flight to stop.
func (s *Sender) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	defer func() {
		// No worker starts once ctx is nil; those running finish.
		s.mu.Lock()
		s.ctx = nil
		s.mu.Unlock()
		s.workers.Wait()
	}()
	s.rescan(ctx)
	s.workers.Add(1)
	go s.collectLoop(ctx)
	tick := time.NewTicker(s.o.SafetyTick)
	defer tick.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		s.startDueLocked()
		wait := time.Hour
		if len(s.timers) > 0 {
			wait = max(s.timers[0].at.Sub(s.o.Now()), time.Millisecond)
		}
		s.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.rearm:
		case <-tick.C:
			s.rescan(ctx)
			s.pruneBackedOff(ctx)
		}
	}
}

// rescan picks up every destination with queued items not already sent to
// or scheduled here: all of them at start, those whose owner in another
// process stopped later.
func (s *Sender) rescan(ctx context.Context) {
	ds, err := s.st.FedDestinations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.o.Log.Warn("federation sender: list destinations", "err", err)
		}
		return
	}
	now := s.o.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, t := range s.woken {
		if now.Sub(t) >= s.o.SafetyTick {
			delete(s.woken, name)
		}
	}
	for _, fd := range ds {
		if s.dests[fd.Destination] != nil {
			continue
		}
		d := &dest{name: fd.Destination, idx: -1}
		s.dests[d.name] = d
		if at := time.UnixMilli(fd.NextAttemptTS); fd.NextAttemptTS > 0 && at.After(now) {
			s.scheduleLocked(d, at)
		} else {
			s.startLocked(d)
		}
	}
}

// Payload collection: the delivered entries' payloads every collectEvery;
// every unreferenced payload (left by a crash between a delivery and its
// collection, or by concurrent coalescing) at start and every sweepEvery.
const (
	collectEvery = time.Second
	sweepEvery   = 10 * time.Minute
)

func (s *Sender) collectLoop(ctx context.Context) {
	defer s.workers.Done()
	sweep := func() {
		if _, err := s.st.FedCollect(ctx, nil); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("federation sender: collect payloads", "err", err)
		}
	}
	collect := func(ctx context.Context) {
		s.gmu.Lock()
		ids := s.garbage
		s.garbage = nil
		s.gmu.Unlock()
		if len(ids) > 0 {
			if _, err := s.st.FedCollect(ctx, ids); err != nil && ctx.Err() == nil {
				s.o.Log.Warn("federation sender: collect payloads", "err", err)
			}
		}
	}
	sweep()
	t := time.NewTicker(collectEvery)
	defer t.Stop()
	lastSweep := time.Now()
	for {
		select {
		case <-ctx.Done():
			// What was delivered so far goes now, not at the next start.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			collect(cctx)
			cancel()
			return
		case <-t.C:
		}
		collect(ctx)
		if time.Since(lastSweep) >= sweepEvery {
			sweep()
			lastSweep = time.Now()
		}
	}
}

// pruneBackedOff enforces the queue cap on destinations in back-off that
// received items since their last attempt.
func (s *Sender) pruneBackedOff(ctx context.Context) {
	s.mu.Lock()
	var names []string
	for _, d := range s.dests {
		if !d.running && d.dirty {
			d.dirty = false
			names = append(names, d.name)
		}
	}
	s.mu.Unlock()
	for _, name := range names {
		s.prune(ctx, name)
	}
}

func (s *Sender) prune(ctx context.Context, dest string) {
	n, err := s.st.FedPrune(ctx, dest, s.o.MaxQueue)
	if s.afterPrune != nil {
		defer s.afterPrune(dest, n)
	}
	if err != nil {
		s.o.Log.Warn("federation sender: prune queue", "destination", dest, "err", err)
	} else if n > 0 {
		s.o.Log.Warn("federation sender: queue over its cap, oldest EDUs dropped", "destination", dest, "dropped", n, "cap", s.o.MaxQueue)
	}
}

// startLocked makes d run now (or as soon as a worker slot frees up).
func (s *Sender) startLocked(d *dest) {
	if d.running {
		return
	}
	d.running, d.again = true, false
	if s.active >= s.o.MaxWorkers {
		s.ready = append(s.ready, d)
		return
	}
	s.active++
	s.workers.Add(1)
	go s.work(s.ctx, d)
}

// finishLocked ends d's worker, handing its slot to the next in line.
func (s *Sender) finishLocked(d *dest) {
	d.running = false
	s.active--
	if s.ctx == nil || s.ctx.Err() != nil {
		for _, r := range s.ready {
			r.running = false
			delete(s.dests, r.name)
		}
		s.ready = nil
	}
	for len(s.ready) > 0 && s.active < s.o.MaxWorkers {
		next := s.ready[0]
		s.ready = s.ready[1:]
		s.active++
		s.workers.Add(1)
		go s.work(s.ctx, next)
	}
	if d.idx < 0 && !d.running {
		delete(s.dests, d.name)
	}
}

func (s *Sender) scheduleLocked(d *dest, at time.Time) {
	d.at = at
	if d.idx >= 0 {
		heap.Fix(&s.timers, d.idx)
	} else {
		heap.Push(&s.timers, d)
	}
	select {
	case s.rearm <- struct{}{}:
	default:
	}
}

func (s *Sender) unscheduleLocked(d *dest) {
	if d.idx >= 0 {
		heap.Remove(&s.timers, d.idx)
	}
}

func (s *Sender) startDueLocked() {
	now := s.o.Now()
	for len(s.timers) > 0 && !s.timers[0].at.After(now) {
		d := heap.Pop(&s.timers).(*dest)
		s.startLocked(d)
	}
}

// backoff is the delay after the retry-th consecutive failure.
func (s *Sender) backoff(retry int) time.Duration {
	d := float64(s.o.MinBackoff) * math.Pow(2, float64(min(retry, 40)-1))
	// Jitter spreads the retries of destinations that failed together;
	// the cap holds after it.
	d *= 0.8 + 0.4*mrand.Float64()
	return time.Duration(min(d, float64(s.o.MaxBackoff)))
}

func (s *Sender) newTxnID() string {
	return s.txnPrefix + "." + strconv.FormatUint(s.txnSeq.Add(1), 10)
}

// work sends d's queue until it is empty, the destination fails, or another
// process turns out to own it.
func (s *Sender) work(ctx context.Context, d *dest) {
	defer s.workers.Done()
	retryAt := time.Time{}
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		live := ctx.Err() == nil
		// Woken during the attempt, or items enqueued here after the
		// worker's last look: go on.
		again := live && (d.woken || (d.again && retryAt.IsZero()))
		if !retryAt.IsZero() && live && !again {
			if d.again {
				// Items came in during the failed attempt: the back-off
				// ticks must look at the queue's cap (as notify marks it
				// for items that come in later).
				d.dirty = true
			}
			s.scheduleLocked(d, retryAt)
		}
		s.finishLocked(d)
		if again {
			s.dests[d.name] = d
			s.startLocked(d)
		}
	}()
	s.mu.Lock()
	woken := d.woken
	d.woken = false
	s.mu.Unlock()
	if woken {
		// The persisted back-off goes first: it is read below (and by any
		// other process).
		if err := s.st.FedResetBackoff(ctx, d.name); err != nil {
			s.o.Log.Warn("federation sender: reset back-off", "destination", d.name, "err", err)
		}
	}
	var lost <-chan struct{}
	unlock := func() {}
	if s.locker != nil {
		u, l, ok, err := s.locker.TryLockDestination(ctx, d.name)
		if err != nil {
			s.o.Log.Warn("federation sender: lock destination", "destination", d.name, "err", err)
			retryAt = s.o.Now().Add(s.o.MinBackoff)
			return
		}
		if !ok {
			if s.lockBusy != nil {
				s.lockBusy(d.name)
			}
			return // another process is sending to it
		}
		unlock, lost = u, l
	}
	defer func() { unlock() }()
	for ctx.Err() == nil {
		select {
		case <-lost:
			return // the lock went with its session: stop; the tick looks again
		default:
		}
		s.mu.Lock()
		d.again = false
		s.mu.Unlock()
		b, err := s.st.FedNextBatch(ctx, d.name, MaxPDUsPerTxn, MaxEDUsPerTxn)
		if err != nil {
			if ctx.Err() == nil {
				s.o.Log.Warn("federation sender: read queue", "destination", d.name, "err", err)
				retryAt = s.o.Now().Add(s.o.MinBackoff)
			}
			return
		}
		if at := time.UnixMilli(b.NextAttemptTS); b.NextAttemptTS > 0 && at.After(s.o.Now()) {
			retryAt = at // in back-off (perhaps recorded by another process)
			return
		}
		if b.Empty() {
			if s.stopIdle(ctx, d, &unlock, &lost) {
				return
			}
			continue
		}
		if !s.attempt(ctx, d, b, &retryAt) {
			return
		}
	}
}

// stopIdle decides whether d's worker may stop on an empty queue: not if
// items arrived meanwhile, from this process (again) or, having released
// the lock, from another one that found the lock taken.
func (s *Sender) stopIdle(ctx context.Context, d *dest, unlock *func(), lost *<-chan struct{}) bool {
	s.mu.Lock()
	again := d.again
	s.mu.Unlock()
	if again {
		return false
	}
	if s.locker == nil {
		return true // the worker's end looks at again once more, under the lock
	}
	if s.idleLocked != nil {
		s.idleLocked(d.name)
	}
	(*unlock)()
	*unlock = func() {}
	b, err := s.st.FedNextBatch(ctx, d.name, 1, 1)
	if err != nil || b.Empty() {
		return true // an error: the tick looks again
	}
	u, l, ok, err := s.locker.TryLockDestination(ctx, d.name)
	if err != nil || !ok {
		return true // the process that holds it will send it
	}
	*unlock, *lost = u, l
	return false
}

type txnBody struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []txnEDU          `json:"edus,omitempty"`
}

type txnEDU struct {
	Type    string          `json:"edu_type"`
	Content json.RawMessage `json:"content"`
}

// attempt sends one batch; it reports whether the destination took it.
func (s *Sender) attempt(ctx context.Context, d *dest, b *store.FedBatch, retryAt *time.Time) bool {
	txnID := b.TxnID
	if txnID == "" {
		txnID = s.newTxnID()
	}
	body := txnBody{Origin: s.o.Origin, OriginServerTS: s.o.Now().UnixMilli(), PDUs: make([]json.RawMessage, len(b.PDUs))}
	for i, e := range b.PDUs {
		body.PDUs[i] = e.JSON
	}
	for _, e := range b.EDUs {
		body.EDUs = append(body.EDUs, txnEDU{Type: e.EDUType, Content: e.JSON})
	}
	pdus, edus := ids(b.PDUs), ids(b.EDUs)
	raw, err := json.Marshal(body)
	if err != nil {
		// A stored payload that is not JSON (Enqueue refuses them): it can
		// never go, and must not hold up the rest.
		s.o.Log.Error("federation sender: unencodable transaction dropped", "destination", d.name, "err", err)
		if err := s.delivered.add(store.FedDone{Destination: d.name, PDUs: pdus, EDUs: edus}); err != nil {
			*retryAt = s.o.Now().Add(s.o.MaxBackoff)
		}
		return err == nil
	}
	sctx, cancel := context.WithTimeout(ctx, s.o.SendTimeout)
	results, err := s.tr.SendTransaction(sctx, d.name, txnID, raw)
	cancel()
	if s.afterAttempt != nil {
		defer s.afterAttempt(d.name, err)
	}
	bg := context.WithoutCancel(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Stopping: keep the ID for the retry after restart, with the
			// back-off as it was (the destination did nothing wrong).
			if err := s.st.FedFailed(bg, d.name, txnID, pdus, edus, b.RetryCount, b.NextAttemptTS); err != nil {
				s.o.Log.Warn("federation sender: record interrupted transaction", "destination", d.name, "err", err)
			}
			return false
		}
		retry := b.RetryCount + 1
		delay := s.backoff(retry)
		*retryAt = s.o.Now().Add(delay)
		s.o.Log.Info("federation sender: transaction failed", "destination", d.name, "txn", txnID, "retry", retry, "next_in", delay.Round(time.Second), "err", err)
		if err := s.st.FedFailed(bg, d.name, txnID, pdus, edus, retry, retryAt.UnixMilli()); err != nil {
			s.o.Log.Warn("federation sender: record failure", "destination", d.name, "err", err)
		}
		s.prune(bg, d.name)
		return false
	}
	for id, e := range results {
		if e != "" {
			// The destination had it and refused it: retrying would not
			// change its mind.
			s.o.Log.Info("federation sender: PDU rejected", "destination", d.name, "event_id", id, "error", e)
		}
	}
	if err := s.delivered.add(store.FedDone{Destination: d.name, PDUs: pdus, EDUs: edus}); err != nil {
		// Sent but still queued: it goes again (same items; the receiver
		// dedupes PDUs by event ID).
		s.o.Log.Warn("federation sender: record delivery", "destination", d.name, "err", err)
		*retryAt = s.o.Now().Add(s.o.MinBackoff)
		return false
	}
	s.Delivered.Add(int64(len(pdus) + len(edus)))
	s.gmu.Lock()
	s.garbage = append(append(s.garbage, pdus...), edus...)
	s.gmu.Unlock()
	return true
}

func ids(es []store.FedEntry) []int64 {
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// timerHeap orders destinations in back-off by their next attempt.
type timerHeap []*dest

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *timerHeap) Push(x any) {
	d := x.(*dest)
	d.idx = len(*h)
	*h = append(*h, d)
}
func (h *timerHeap) Pop() any {
	old := *h
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	d.idx = -1
	return d
}
