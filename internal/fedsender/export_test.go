package fedsender

// SetAfterAttempt installs a hook called when each attempt and its
// bookkeeping are done.
func (s *Sender) SetAfterAttempt(f func(dest string, err error)) { s.afterAttempt = f }
