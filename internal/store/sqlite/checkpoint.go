package sqlite

import (
	"context"
	"database/sql"
	"net/url"
	"time"
)

// WAL checkpoints run here, off the commit path. With SQLite's automatic
// checkpoints the commit that pushes the WAL past 1,000 pages copies it into
// the database file and fsyncs it before answering, and every commit queued
// behind it waits: a latency spike every few hundred messages. The writer
// therefore runs with wal_autocheckpoint=0, and a background connection
// checkpoints PASSIVE (never blocking writers or readers) twice a second
// when there were writes, and RESTART (briefly holding back writers so the
// WAL starts over) when the WAL has grown past walRestartFrames anyway.
const (
	checkpointEvery  = 500 * time.Millisecond
	walRestartFrames = 16384 // 64 MiB of 4 KiB pages
)

type checkpointer struct {
	conn *sql.DB
	stop chan struct{}
	done chan struct{}
}

func (db *DB) startCheckpointer(path string) error {
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "synchronous(FULL)"} {
		q.Add("_pragma", p)
	}
	conn, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return err
	}
	conn.SetMaxOpenConns(1)
	cp := &checkpointer{conn: conn, stop: make(chan struct{}), done: make(chan struct{})}
	db.checkpoints = cp
	go func() {
		defer close(cp.done)
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		last := db.maxPos.Load()
		for {
			select {
			case <-cp.stop:
				return
			case <-t.C:
			}
			if pos := db.maxPos.Load(); pos == last && pos != 0 {
				continue // no commit since the last checkpoint
			} else {
				last = pos
			}
			db.checkpoint(context.Background(), "PASSIVE")
		}
	}()
	return nil
}

// checkpoint runs one checkpoint of the given mode; a PASSIVE one that
// leaves a large WAL behind is followed by a RESTART. Errors are not fatal:
// the next round tries again, and SQLite stays correct with any WAL size.
func (db *DB) checkpoint(ctx context.Context, mode string) {
	cp := db.checkpoints
	var busy, frames, done int64
	if err := cp.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &frames, &done); err != nil {
		return
	}
	if mode == "PASSIVE" && frames > walRestartFrames {
		cp.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &frames, &done)
	}
}

func (db *DB) stopCheckpointer() {
	cp := db.checkpoints
	if cp == nil {
		return
	}
	close(cp.stop)
	<-cp.done
	db.checkpoint(context.Background(), "TRUNCATE")
	cp.conn.Close()
}
