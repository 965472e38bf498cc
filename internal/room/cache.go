package room

import (
	"container/list"
	"context"
	"sync"

	"conclave/internal/event"
	"conclave/internal/lru"
	"conclave/internal/store"
)

// eventCache keeps parsed PDUs by event ID (bounded LRU) and room versions,
// so stored events are not re-parsed on every /sync or /messages.
type eventCache struct {
	mu       sync.Mutex
	max      int
	ll       *list.List
	items    map[string]*list.Element
	versions *lru.Cache[string, *event.RoomVersion] // bounded: rooms are many
}

// maxCachedVersions bounds the room versions remembered.
const maxCachedVersions = 200_000

func (c *eventCache) init(max int) {
	c.max = max
	c.ll = list.New()
	c.items = make(map[string]*list.Element)
	c.versions = lru.New[string, *event.RoomVersion](maxCachedVersions)
}

func (c *eventCache) get(id string) *event.PDU {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[id]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*event.PDU)
	}
	return nil
}

func (c *eventCache) put(p *event.PDU) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[p.EventID]; ok {
		return
	}
	c.items[p.EventID] = c.ll.PushFront(p)
	if c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*event.PDU).EventID)
	}
}

// drop forgets the parsed events ids.
func (c *eventCache) drop(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if el, ok := c.items[id]; ok {
			c.ll.Remove(el)
			delete(c.items, id)
		}
	}
}

func (c *eventCache) version(roomID string) *event.RoomVersion {
	rv, _ := c.versions.Get(roomID)
	return rv
}

func (c *eventCache) setVersion(roomID string, rv *event.RoomVersion) {
	c.versions.Put(roomID, rv)
}

// parse returns the PDU of a stored event, from the cache when possible.
func (s *Service) parse(rv *event.RoomVersion, se *store.StoredEvent) (*event.PDU, error) {
	if p := s.parsed.get(se.EventID); p != nil {
		return p, nil
	}
	p, err := event.ParsePDU(rv, se.JSON)
	if err != nil {
		return nil, err
	}
	if p.RoomID == "" { // a v12 create event carries no room_id
		p.RoomID = se.RoomID
	}
	s.parsed.put(p)
	return p, nil
}

// Event returns the parsed PDU of a stored event.
func (s *Service) Event(ctx context.Context, se *store.StoredEvent) (*event.PDU, error) {
	rv, err := s.RoomVersion(ctx, se.RoomID)
	if err != nil {
		return nil, err
	}
	return s.parse(rv, se)
}

// ForgetPurged drops what this process keeps in memory of events of roomID
// that were just purged (internal/retention): their parsed form and the
// room's recent events. Reads that come after see the store's purged rows.
func (s *Service) ForgetPurged(roomID string, ids []string) {
	s.parsed.drop(ids)
	s.ForgetRecent(roomID)
}
