package loadtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Config is what every scenario shares.
type Config struct {
	Server *Server
	// Peer, when set, is a second server federating with Server (the
	// federation scenario): every other user is registered there, so each
	// room spans both servers.
	Peer     *Server
	PID      int    // the server's process ID for CPU/RSS figures; 0: unknown
	PeerPID  int    // the peer's, likewise
	Prefix   string // localpart prefix, unique per run so runs never collide
	Parallel int    // concurrency of setup requests
	Log      func(format string, args ...any)
}

func (c *Config) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// parallel runs f(0..n-1) with at most conc at a time and returns the first error.
func parallel(ctx context.Context, n, conc int, f func(ctx context.Context, i int) error) error {
	if conc < 1 {
		conc = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := 0; w < min(conc, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// registerUsers creates n accounts named <prefix>-<tag>-<i>.
func (c *Config) registerUsers(ctx context.Context, tag string, n int) ([]*User, error) {
	return c.registerOn(ctx, nil, tag, n)
}

// registerOn registers n users on srv (nil: alternately on Server and Peer).
func (c *Config) registerOn(ctx context.Context, on *Server, tag string, n int) ([]*User, error) {
	users := make([]*User, n)
	start := time.Now()
	err := parallel(ctx, n, c.Parallel, func(ctx context.Context, i int) error {
		srv := on
		if srv == nil {
			srv = c.Server
			if c.Peer != nil && i%2 == 1 {
				srv = c.Peer
			}
		}
		u, err := srv.Register(ctx, fmt.Sprintf("%s-%s-%d", c.Prefix, tag, i), "")
		users[i] = u
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("registering %s users: %w", tag, err)
	}
	c.logf("registered %d %s users in %s", n, tag, time.Since(start).Round(time.Millisecond))
	return users, nil
}

// initialSync gives every user a since token.
func (c *Config) initialSync(ctx context.Context, users []*User, filter string) ([]string, error) {
	tokens := make([]string, len(users))
	err := parallel(ctx, len(users), c.Parallel, func(ctx context.Context, i int) error {
		r, err := users[i].Sync(ctx, "", filter, 0)
		if err == nil {
			tokens[i] = r.NextBatch
		}
		return err
	})
	return tokens, err
}

// lazyFilter is what Element-class clients ask for: lazy-loaded members, no
// presence, a bounded timeline.
const lazyFilter = `{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":100}},"presence":{"not_types":["*"]}}`
