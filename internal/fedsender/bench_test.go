package fedsender_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"conclave/internal/fedsender"
	"conclave/internal/store"
	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

// BenchmarkEnqueueDeliver: b.N PDUs (about 600 bytes each) enqueued by 8
// concurrent writers (rooms) to 1 or 17 destinations on loopback HTTP, until
// every destination has processed them all: end-to-end throughput, PDUs/s
// (messages; deliveries/s counts each destination's copy).
//
//	go test -run XXX -bench EnqueueDeliver -benchtime 5000x ./internal/fedsender/
func BenchmarkEnqueueDeliver(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(b *testing.B) (store.Store, error)
	}{
		{"sqlite", func(b *testing.B) (store.Store, error) {
			return sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "conclave.db"))
		}},
		{"postgres", func(b *testing.B) (store.Store, error) {
			return postgres.Open(context.Background(), pgtest.NewDatabase(b))
		}},
	} {
		for _, fan := range []int{1, 17} {
			b.Run(fmt.Sprintf("%s/dests=%d", be.name, fan), func(b *testing.B) {
				st, err := be.open(b)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				dst := newDest(b)
				tr := &httpTransport{urls: map[string]string{}}
				var dests []string
				for i := range fan {
					dests = append(dests, fmt.Sprintf("d%d.test", i))
					tr.add(dests[i], dst)
				}
				s := fedsender.New(st, tr, fedsender.Options{Origin: "origin.test", Log: quietLog()})
				delivered := make(chan struct{}, 1<<16)
				s.SetAfterAttempt(func(string, error) {
					select {
					case delivered <- struct{}{}:
					default:
					}
				})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { s.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				filler := strings.Repeat("x", 500)
				b.ResetTimer()
				start := time.Now()
				const writers = 8
				var wg sync.WaitGroup
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < b.N; i += writers {
							id := fmt.Sprintf("$ev%d", i)
							it := fedsender.PDU(id, []byte(fmt.Sprintf(`{"event_id":%q,"type":"m.room.message","content":{"body":%q}}`, id, filler)))
							if err := s.Enqueue(ctx, dests, it); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				enqueued := time.Since(start)
				deadline := time.After(5 * time.Minute)
				for s.Delivered.Load() < int64(b.N*fan) {
					select {
					case <-delivered:
					case <-deadline:
						b.Fatalf("delivered %d of %d", s.Delivered.Load(), b.N*fan)
					}
				}
				el := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/el.Seconds(), "PDUs/s")
				b.ReportMetric(float64(b.N*fan)/el.Seconds(), "deliveries/s")
				b.ReportMetric(float64(b.N)/enqueued.Seconds(), "enqueued/s")
				b.ReportMetric(float64(len(dst.acceptedTxns())), "txns")
			})
		}
	}
}
