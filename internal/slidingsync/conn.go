package slidingsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Connections: a client's (device's) view of its rooms under one conn_id.
// The store keeps the latest position handed out and the one it was built
// from, so a client that lost a response (or abandoned a long-poll when it
// changed its ranges) can go on from the position before; any other is
// unknown. A position is written "<connection>_<seq>": a new connection
// under the same conn_id has a new number, so an old position never
// matches it.

// Connection limits (Synapse expires connections unused for a week).
const (
	maxConnsPerDevice = 10
	connExpiry        = 7 * 24 * time.Hour
	touchEvery        = time.Hour
)

// errUnknownPos is the MSC's answer to a position the server does not know
// (or no longer keeps): the client starts a new connection.
var errUnknownPos = matrix.Errorf(http.StatusBadRequest, "M_UNKNOWN_POS", "Unknown position")

// connState is what the connection keeps besides its rooms, at a position.
type connState struct {
	// Pos is the stream position the response was built up to: receipts,
	// account data and device lists are sent from there.
	Pos    int64 `json:"p"`
	Typing int64 `json:"t,omitempty"`
	// Configs are the room configs the connection's rows refer to, by
	// fingerprint: what was sent, for sending what a new config adds. Read
	// from the store only when needed (see session.configs): an idle
	// long-poll keeps them as one string.
	Configs    map[string]config `json:"-"`
	RawConfigs json.RawMessage   `json:"c,omitempty"`
	// Lists are fingerprints of each list's answer (count and windows): a
	// change of order is news even when no room changed.
	Lists map[string]string `json:"l,omitempty"`
}

// maxConfigs bounds the configs a connection remembers; a room whose config
// is forgotten is sent its required state again in full.
const maxConfigs = 32

func parsePos(s string) (conn, seq int64, ok bool) {
	a, b, found := strings.Cut(s, "_")
	if !found {
		return 0, 0, false
	}
	conn, err1 := strconv.ParseInt(a, 10, 64)
	seq, err2 := strconv.ParseInt(b, 10, 64)
	return conn, seq, err1 == nil && err2 == nil && conn > 0 && seq > 0
}

func formatPos(conn, seq int64) string {
	return strconv.FormatInt(conn, 10) + "_" + strconv.FormatInt(seq, 10)
}

// sentRoom is how far a room was sent to the client, with which config and
// $LAZY members (the part of a store.SlidingRoom the engine reads: a
// waiting long-poll keeps one per room).
type sentRoom struct {
	Sent, Config int64
	Lazy         []byte
}

// session is a connection opened at a position: what the client has.
type session struct {
	conn  *store.SlidingConn
	seq   int64 // the position the client is at (0: new connection)
	state connState
	rooms map[string]sentRoom // as of seq

	retry  bool  // seq is the connection's previous position
	latest int64 // the connection's latest position
}

// create starts a new connection: its session at once (it starts from
// nothing) and its row written on a goroutine of its own, while the first
// response is built; created reports when the row is there (conn.ID set).
func (s *Service) create(ctx context.Context, userID, deviceID, connID string) (ss *session, created <-chan error) {
	now := s.now()
	c := &store.SlidingConn{UserID: userID, DeviceID: deviceID, ConnID: connID, State: []byte("{}"), UpdatedTS: now.UnixMilli()}
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic opening a sliding sync connection: %v\n%s", p, debug.Stack())
			}
			done <- err
		}()
		c.ID, err = s.store.NewSlidingConn(ctx, c, maxConnsPerDevice, now.Add(-connExpiry).UnixMilli())
	}()
	return &session{conn: c, rooms: map[string]sentRoom{}}, done
}

// open finds the client's connection at pos, or starts a new one when pos
// is empty (replacing any under the same conn_id).
func (s *Service) open(ctx context.Context, userID, deviceID, connID, pos string) (*session, error) {
	now := s.now()
	if pos == "" {
		ss, created := s.create(ctx, userID, deviceID, connID)
		return ss, <-created
	}
	id, seq, ok := parsePos(pos)
	if !ok {
		return nil, errUnknownPos
	}
	c, err := s.store.SlidingConn(ctx, userID, deviceID, connID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownPos
	}
	if err != nil {
		return nil, err
	}
	if c.ID != id || (seq != c.Seq && seq != c.PrevSeq) || c.UpdatedTS < now.Add(-connExpiry).UnixMilli() {
		return nil, errUnknownPos
	}
	ss := &session{conn: c, seq: seq, retry: seq != c.Seq, latest: c.Seq}
	raw := c.State
	if ss.retry {
		raw = c.PrevState
	}
	if err := json.Unmarshal(raw, &ss.state); err != nil {
		return nil, errUnknownPos // unreadable (an older format): start again
	}
	c.State, c.PrevState = nil, nil // parsed: a waiting long-poll keeps less
	rows, err := s.store.SlidingRooms(ctx, c.ID)
	if err != nil {
		return nil, err
	}
	ss.rooms = make(map[string]sentRoom, len(rows))
	for _, r := range rows {
		if ss.retry && r.Seq == c.Seq {
			// Changed by the position the client never took.
			r.Sent, r.Config, r.Lazy = r.PrevSent, r.PrevConfig, r.PrevLazy
		}
		ss.rooms[r.RoomID] = sentRoom{Sent: r.Sent, Config: r.Config, Lazy: r.Lazy}
	}
	if now.UnixMilli()-c.UpdatedTS > touchEvery.Milliseconds() {
		if err := s.store.TouchSlidingConn(ctx, c.ID, now.UnixMilli()); err != nil {
			return nil, err
		}
	}
	return ss, nil
}

// advance records the response's position: the new state and the rooms it
// sent. It returns the new position, or store.ErrConflict when another
// request moved the connection on meanwhile.
func (s *Service) advance(ctx context.Context, ss *session, st connState, sent map[string]roomSent) (string, error) {
	next := ss.latest + 1
	prevState, err := json.Marshal(ss.state)
	if err != nil {
		return "", err
	}
	// Carry the configs over, keeping those the rows still refer to
	// (bounded).
	old, err := ss.configs()
	if err != nil {
		return "", err
	}
	for k, v := range old {
		if _, ok := st.Configs[k]; !ok {
			st.Configs[k] = v
		}
	}
	used := map[int64]bool{}
	for _, r := range ss.rooms {
		used[r.Config] = true
	}
	for _, r := range sent {
		used[r.config] = true
	}
	for k := range st.Configs {
		fp, _ := strconv.ParseInt(k, 10, 64)
		if !used[fp] || len(st.Configs) > maxConfigs {
			delete(st.Configs, k)
		}
	}
	if st.RawConfigs, err = json.Marshal(st.Configs); err != nil {
		return "", err
	}
	cur, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	rows := make([]store.SlidingRoom, 0, len(sent))
	for id, r := range sent {
		old := ss.rooms[id]
		rows = append(rows, store.SlidingRoom{RoomID: id, Seq: next, Sent: r.sent, Config: r.config, Lazy: r.lazy,
			PrevSent: old.Sent, PrevConfig: old.Config, PrevLazy: old.Lazy})
	}
	u := store.SlidingConnUpdate{Seq: next, PrevSeq: ss.seq, State: cur, PrevState: prevState, UpdatedTS: s.now().UnixMilli()}
	if err := s.store.AdvanceSlidingConn(ctx, ss.conn.ID, ss.latest, u, rows); err != nil {
		return "", err
	}
	return formatPos(ss.conn.ID, next), nil
}

// configs returns the configs of the session's position, parsed on first
// need.
func (ss *session) configs() (map[string]config, error) {
	if ss.state.Configs == nil {
		ss.state.Configs = map[string]config{}
		if len(ss.state.RawConfigs) > 0 {
			if err := json.Unmarshal(ss.state.RawConfigs, &ss.state.Configs); err != nil {
				return nil, err
			}
		}
	}
	return ss.state.Configs, nil
}

// roomSent is what a response sent of a room.
type roomSent struct {
	sent   int64
	config int64
	lazy   []byte // lazyMembers, encoded
}

// lazyMembers are the member events a connection sent of a room for
// $LAZY, by user: the stream position of the member event sent. A member
// whose event the client has is not sent again with each of their messages
// (Synapse remembers them too); a changed member event is.
type lazyMembers map[string]int64

// maxLazyMembers bounds what a room's row remembers; beyond it the record
// starts again (the client gets some member events twice).
const maxLazyMembers = 200

func decodeLazy(b []byte) lazyMembers {
	l := lazyMembers{}
	if len(b) > 0 {
		json.Unmarshal(b, &l) // unreadable: remember nothing (members are sent again)
	}
	return l
}
