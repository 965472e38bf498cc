package fedsender_test

import (
	"conclave/internal/federation"
	"conclave/internal/fedsender"
)

// The homeserver wires the federation service's outbox to a Sender, and the
// Sender's transport to the federation client.
var (
	_ federation.Outbox   = (*fedsender.Sender)(nil)
	_ fedsender.Transport = federation.Transport{}
)
