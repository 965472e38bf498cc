package fedsender

import "time"

// SetAfterAttempt installs a hook called when each attempt and its
// bookkeeping are done.
func (s *Sender) SetAfterAttempt(f func(dest string, err error)) { s.afterAttempt = f }

// SetLockHooks installs hooks called when a worker holding a destination's
// lock found its queue empty (before it releases the lock), and when a
// worker found the lock held by another process.
func (s *Sender) SetLockHooks(idleLocked, lockBusy func(dest string)) {
	s.idleLocked, s.lockBusy = idleLocked, lockBusy
}

// Backoff is the delay after the retry-th consecutive failure.
func (s *Sender) Backoff(retry int) time.Duration { return s.backoff(retry) }

// SetAfterPrune installs a hook called when the queue cap was enforced on
// a destination.
func (s *Sender) SetAfterPrune(f func(dest string, dropped int)) { s.afterPrune = f }
