package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"conclave/internal/store"
)

// clusterChannel is the NOTIFY channel every process listens on.
const clusterChannel = "conclave_cluster"

var _ store.Cluster = (*DB)(nil)

// Publish implements store.Cluster: one statement NOTIFYs every message, in
// order (pg_notify delivers on commit, here at once).
func (db *DB) Publish(ctx context.Context, msgs []string) error {
	if len(msgs) == 0 {
		return nil
	}
	for _, m := range msgs {
		if len(m) > store.MaxClusterMessage {
			return fmt.Errorf("cluster message of %d bytes is too large", len(m))
		}
	}
	_, err := db.pool.Exec(ctx, `SELECT pg_notify($1, m) FROM unnest($2::text[]) AS m`, clusterChannel, msgs)
	return err
}

// PublishSequenced implements store.Cluster. The serial row stays locked
// until commit, so serials commit, and their notifications arrive, in order.
func (db *DB) PublishSequenced(ctx context.Context, build func(serial int64) (string, error)) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		var serial int64
		if err := tx.QueryRow(ctx, `UPDATE ephemeral_serial SET serial = serial + 1 WHERE id = 1 RETURNING serial`).Scan(&serial); err != nil {
			return err
		}
		msg, err := build(serial)
		if err != nil {
			return err
		}
		if len(msg) > store.MaxClusterMessage {
			return fmt.Errorf("cluster message of %d bytes is too large", len(msg))
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, clusterChannel, msg)
		return err
	})
}

// Listen implements store.Cluster on one dedicated connection (outside the
// pool: LISTEN belongs to a session).
func (db *DB) Listen(ctx context.Context, onConnect func(serial, streamPos int64), onMessage func(string), onStream func(from, to int64, marks string), onError func(error)) {
	const maxBackoff = 5 * time.Second
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		connected, err := db.listenOnce(ctx, onConnect, onMessage, onStream)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = 50 * time.Millisecond
		}
		if onError != nil {
			onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// streamChannel carries the stream row trigger's notifications (migration
// 0012).
const streamChannel = "conclave_stream"

func (db *DB) listenOnce(ctx context.Context, onConnect func(serial, streamPos int64), onMessage func(string), onStream func(from, to int64, marks string)) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+clusterChannel+`; LISTEN `+streamChannel); err != nil {
		return false, err
	}
	// Read the serial and position only once listening: any change after
	// them arrives.
	var serial, pos int64
	if err := conn.QueryRow(ctx, `SELECT (SELECT serial FROM ephemeral_serial WHERE id = 1), (SELECT pos FROM stream WHERE id = 1)`).Scan(&serial, &pos); err != nil {
		return false, err
	}
	onConnect(serial, pos)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, err
		}
		if n.Channel != streamChannel {
			onMessage(n.Payload)
			continue
		}
		// "<from> <to> <marks>"
		parts := strings.SplitN(n.Payload, " ", 3)
		if len(parts) < 2 {
			return true, fmt.Errorf("unreadable stream notification %q", n.Payload)
		}
		from, err1 := strconv.ParseInt(parts[0], 10, 64)
		to, err2 := strconv.ParseInt(parts[1], 10, 64)
		if err1 != nil || err2 != nil {
			return true, fmt.Errorf("unreadable stream notification %q", n.Payload)
		}
		marks := ""
		if len(parts) == 3 {
			marks = parts[2]
		}
		onStream(from, to, marks)
	}
}

// SharedSigningKey implements store.Cluster: the first process to start
// stores its key; everyone reads the stored one.
func (db *DB) SharedSigningKey(ctx context.Context, key []byte) ([]byte, error) {
	if _, err := db.pool.Exec(ctx, `INSERT INTO server_signing_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING`, string(key)); err != nil {
		return nil, err
	}
	var stored string
	if err := db.pool.QueryRow(ctx, `SELECT key FROM server_signing_key WHERE id = 1`).Scan(&stored); err != nil {
		return nil, err
	}
	return []byte(stored), nil
}

var _ store.RoomLocker = (*DB)(nil)

// LockRoom implements store.RoomLocker with a session-level advisory lock on
// a connection of the locks pool (PostgreSQL queues the waiters). A process
// that dies releases its locks with its sessions.
func (db *DB) LockRoom(ctx context.Context, roomID string) (func(), error) {
	conn, err := db.locks.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, hashtext($2))`, roomWriteClass, roomID); err != nil {
		// A cancelled wait may leave the session in doubt: drop it.
		conn.Conn().Close(context.WithoutCancel(ctx))
		conn.Release()
		return nil, err
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, roomWriteClass, roomID); err != nil {
			conn.Conn().Close(uctx) // closing the session releases the lock
		}
		conn.Release()
	}, nil
}

var _ store.SigningKeyRotator = (*DB)(nil)

// RotateSharedSigningKey implements store.SigningKeyRotator: the key row is
// replaced only if it still holds oldKey, and the retired key is recorded
// in the same transaction, so no process ever reads a new key whose
// predecessor is not listed as old.
func (db *DB) RotateSharedSigningKey(ctx context.Context, oldKey, newKey []byte, retired store.ServerKey) error {
	return db.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE server_signing_key SET key = $1 WHERE id = 1 AND key = $2`, string(newKey), string(oldKey))
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return store.ErrConflict
		}
		_, err = tx.Exec(ctx, `INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (server_name, key_id) DO UPDATE SET public_key = excluded.public_key, valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts, fetched_ts = excluded.fetched_ts`,
			retired.ServerName, retired.KeyID, retired.PublicKey, retired.ValidUntilTS, retired.ExpiredTS, retired.FetchedTS)
		return err
	})
}
