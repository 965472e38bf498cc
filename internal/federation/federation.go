// Package federation is what this server does with other servers about
// rooms: it takes their transactions in (every PDU's signatures and hashes
// checked, then handed to the room writer, gaps before it filled from the
// sender), sends this server's events out (queued per destination in the
// store by internal/fedsender), and joins rooms through them. The room
// writer (internal/room) decides what an event means; the HTTP handlers
// (internal/federationapi) only parse and answer.
package federation

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/keyring"
	"conclave/internal/lru"
	"conclave/internal/room"
	"conclave/internal/store"
)

// Service is federation for rooms.
type Service struct {
	ServerName string
	Key        *event.SigningKey
	Rooms      *room.Service
	Client     *fedclient.Client
	Keys       *keyring.Keyring
	// Outbox delivers this server's events; nil: nothing is sent.
	Outbox Outbox
	// Sinks take the EDUs received (edu.go).
	Sinks EDUSinks
	// Txns keeps the answers to received transactions across restarts
	// (nil: in memory only).
	Txns store.FedTxns
	Log  *slog.Logger

	txnOnce sync.Once
	txns    *lru.Cache[string, json.RawMessage] // (origin, txnID) → answer
	// txnsPruned: when the stored answers were last pruned (Unix ms).
	txnsPruned atomic.Int64
	// inflight serialises transactions of one origin and ID (a retry while
	// the first is still being processed waits for its answer).
	inflightMu sync.Mutex
	inflight   map[string]*sync.Mutex
	// backfilling serialises backfilling per room (backfill.go).
	backfillMu  sync.Mutex
	backfilling map[string]*roomBackfill
	// backfillMisses: when points last gave nothing (backfill.go).
	backfillOnce   sync.Once
	backfillMisses *lru.Cache[string, time.Time]
}

// Outbox is the durable outbound queue (internal/fedsender): committed
// when EnqueuePDU returns.
type Outbox interface {
	EnqueuePDU(ctx context.Context, dests []string, eventID string, pdu []byte) error
	EnqueueEDU(ctx context.Context, dests []string, eduType string, content []byte) error
	// EDUEntry is an EDU for dests as a queue entry another store write
	// commits with the change it belongs to (ok false: no destination but
	// this server); Committed starts its delivery once that write
	// committed (fedsender.Sender.Entry).
	EDUEntry(dests []string, eduType string, content []byte) (e store.FedEnqueue, ok bool, err error)
	Committed(dests []string)
}

// Outgoing queues events this server made for the other servers in their
// room (room.Service.Outgoing).
func (s *Service) Outgoing(roomID string, pdus []*event.PDU, servers []string) {
	if s.Outbox == nil {
		return
	}
	for _, pdu := range pdus {
		if err := s.Outbox.EnqueuePDU(context.Background(), servers, pdu.EventID, pdu.Raw); err != nil {
			s.Log.Error("federation: queueing an event", "room", roomID, "event", pdu.EventID, "err", err)
		}
	}
}

// Committed starts sending to servers the events the room service's store
// write queued for them (room.Service.FedCommitted, store.NewEvent.Fed).
func (s *Service) Committed(servers []string) {
	if s.Outbox != nil {
		s.Outbox.Committed(servers)
	}
}

// Transport sends transactions through the federation client (the
// transport of internal/fedsender).
type Transport struct{ Client *fedclient.Client }

// SendTransaction sends one transaction and returns each PDU's error.
func (t Transport) SendTransaction(ctx context.Context, dest, txnID string, body []byte) (map[string]string, error) {
	raw, err := t.Client.SendTransaction(ctx, dest, txnID, body)
	if err != nil {
		return nil, err
	}
	var resp struct {
		PDUs map[string]struct {
			Error string `json:"error"`
		} `json:"pdus"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, errors.New("federation: the destination's answer to /send is not JSON")
	}
	out := make(map[string]string, len(resp.PDUs))
	for id, r := range resp.PDUs {
		out[id] = r.Error
	}
	return out, nil
}
