package syncfilter

import (
	"context"
	"encoding/json"
	"sync"
)

// maxCached bounds a Cache; when full it starts over.
const maxCached = 10_000

// Cache remembers parsed filters so that a client's every /sync does not
// fetch and parse its filter again. Uploaded filters never change (the spec
// has no way to edit one), and a parsed Filter is only read, so entries need
// no invalidation.
type Cache struct {
	mu sync.Mutex
	m  map[cacheKey]*Filter
}

type cacheKey struct{ user, param string }

// FromQuery is the package's FromQuery through the cache.
func (c *Cache) FromQuery(ctx context.Context, param, userID string, get func(ctx context.Context, userID, filterID string) (json.RawMessage, error)) (*Filter, error) {
	if param == "" {
		return nil, nil
	}
	k := cacheKey{param: param}
	if param[0] != '{' {
		k.user = userID // filter IDs are per user; inline filters are not
	}
	c.mu.Lock()
	f, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := FromQuery(ctx, param, userID, get)
	if err != nil {
		return nil, err
	}
	if len(param) <= 4096 {
		c.mu.Lock()
		if c.m == nil || len(c.m) >= maxCached {
			c.m = make(map[cacheKey]*Filter)
		}
		c.m[k] = f
		c.mu.Unlock()
	}
	return f, nil
}
