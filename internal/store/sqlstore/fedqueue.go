package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"

	"conclave/internal/store"
)

// The outbound federation queue (store.FedQueue, migration 0015). A payload
// (fed_payloads) is stored once however many destinations it goes to; each
// destination has a queue row referring to it. A payload whose last row
// went is deleted by FedCollect, after the commit that removed the row:
// a check inside that transaction could miss a row another destination's
// concurrent transaction is deleting (PostgreSQL: each still sees the
// other's row), and a reference count in the payload row would make the
// deliveries to every destination wait for each other on that row. Payloads
// a new item replaces (coalescing) or the cap drops are collected in the
// same transaction; the rare one a concurrent transaction keeps is left to
// FedCollect(nil).

// textList returns a subquery of one column, value, over vals, with the
// parameter it needs appended to args: one statement text whatever the
// number of values (SQLite: json_each over a JSON array; PostgreSQL: unnest
// of a text array).
func (s *Shared) textList(vals []string, args []any) (string, []any) {
	if s.d.ArrayParams {
		return `SELECT unnest(CAST(? AS text[])) AS value`, append(args, vals)
	}
	js, _ := json.Marshal(vals)
	return `SELECT value FROM json_each(?)`, append(args, string(js))
}

// inInts returns the condition "expr is one of ids" with its parameter.
func (s *Shared) inInts(expr string, ids []int64, args []any) (string, []any) {
	if s.d.ArrayParams {
		return expr + ` = ANY(?)`, append(args, ids)
	}
	js, _ := json.Marshal(ids)
	return expr + ` IN (SELECT value FROM json_each(?))`, append(args, string(js))
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (s *Shared) FedEnqueue(ctx context.Context, items []store.FedEnqueue) error {
	for attempt := 1; ; attempt++ {
		err := s.b.Tx(ctx, func(tx Querier) error {
			for i := range items {
				if err := s.fedEnqueue(ctx, tx, &items[i]); err != nil {
					return err
				}
			}
			return nil
		})
		// Two processes replacing the same coalesced EDU at once: the
		// second insert meets the first's row, which a retry replaces.
		if err == nil || attempt == 3 || !s.b.IsUnique(err) {
			return err
		}
	}
}

// FedEnqueueTx queues e in tx, a transaction of another write (a backend's
// PersistEvents: store.NewEvent.Fed).
func (s *Shared) FedEnqueueTx(ctx context.Context, tx Querier, e store.FedEnqueue) error {
	return s.fedEnqueue(ctx, tx, &e)
}

func (s *Shared) fedEnqueue(ctx context.Context, tx Querier, e *store.FedEnqueue) error {
	dests := slices.Clone(e.Destinations)
	slices.Sort(dests)
	dests = slices.Compact(dests)
	if len(dests) == 0 {
		return nil
	}
	it := &e.Item
	if it.IsPDU() == (it.EventID == "") {
		return errors.New("store: a federation item is a PDU (event ID) or an EDU (type)")
	}
	if it.CoalesceKey != "" && !it.IsPDU() {
		// The EDU queued under the same key to these destinations is
		// superseded.
		sub, args := s.textList(dests, []any{it.CoalesceKey})
		gone, err := deletedIDs(ctx, tx, `DELETE FROM fed_queue_edus WHERE coalesce_key = ? AND destination IN (`+sub+`) RETURNING payload_id`, args...)
		if err != nil {
			return err
		}
		if _, err := s.collect(ctx, tx, gone); err != nil {
			return err
		}
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO fed_payloads (event_id, edu_type, json) VALUES (?, ?, ?) RETURNING id`,
		nullIfEmpty(it.EventID), nullIfEmpty(it.EDUType), it.JSON).Scan(&id); err != nil {
		return err
	}
	// One statement for every destination.
	if it.IsPDU() {
		sub, args := s.textList(dests, []any{id})
		_, err := tx.Exec(ctx, `INSERT INTO fed_queue_pdus (destination, payload_id) SELECT value, CAST(? AS BIGINT) FROM (`+sub+`) d`, args...)
		return err
	}
	sub, args := s.textList(dests, []any{id, nullIfEmpty(it.CoalesceKey), !it.Keep})
	_, err := tx.Exec(ctx, `INSERT INTO fed_queue_edus (destination, payload_id, coalesce_key, droppable)
		SELECT value, CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS BOOLEAN) FROM (`+sub+`) d`, args...)
	return err
}

// deletedIDs runs a DELETE … RETURNING payload_id.
func deletedIDs(ctx context.Context, q Querier, query string, args ...any) ([]int64, error) {
	rows, err := q.Query(ctx, query, args...)
	return collect(rows, err, func(r Rows, id *int64) error { return r.Scan(id) })
}

// collect deletes the payloads among ids (all of them: ids nil) that no
// queue row refers to.
func (s *Shared) collect(ctx context.Context, q Querier, ids []int64) (int64, error) {
	const unreferenced = `NOT EXISTS (SELECT 1 FROM fed_queue_pdus q WHERE q.payload_id = fed_payloads.id)
		AND NOT EXISTS (SELECT 1 FROM fed_queue_edus q WHERE q.payload_id = fed_payloads.id)`
	if ids == nil {
		return q.Exec(ctx, `DELETE FROM fed_payloads WHERE `+unreferenced)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	cond, args := s.inInts("id", ids, nil)
	return q.Exec(ctx, `DELETE FROM fed_payloads WHERE `+cond+` AND `+unreferenced, args...)
}

func (s *Shared) FedCollect(ctx context.Context, ids []int64) (int, error) {
	n, err := s.collect(ctx, s.b.Write(), ids)
	return int(n), err
}

func (s *Shared) FedNextBatch(ctx context.Context, dest string, maxPDUs, maxEDUs int) (*store.FedBatch, error) {
	q := s.b.Read()
	var txn string
	b := &store.FedBatch{}
	err := q.QueryRow(ctx, `SELECT pending_txn, retry_count, next_attempt_ts FROM fed_destinations WHERE destination = ?`, dest).Scan(&txn, &b.RetryCount, &b.NextAttemptTS)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	if txn != "" {
		// Only the sender that owns dest marks rows pending, and it sends
		// all of them: a retry resends what is left of them, nothing more.
		if b.PDUs, err = fedEntries(ctx, q, `SELECT q.payload_id, p.event_id, p.edu_type, p.json FROM fed_queue_pdus q JOIN fed_payloads p ON p.id = q.payload_id
			WHERE q.destination = ? AND q.pending ORDER BY q.payload_id LIMIT ?`, dest, maxPDUs); err != nil {
			return nil, err
		}
		if b.EDUs, err = fedEntries(ctx, q, `SELECT q.payload_id, p.event_id, p.edu_type, p.json FROM fed_queue_edus q JOIN fed_payloads p ON p.id = q.payload_id
			WHERE q.destination = ? AND q.pending ORDER BY q.payload_id LIMIT ?`, dest, maxEDUs); err != nil {
			return nil, err
		}
		if !b.Empty() {
			b.TxnID = txn
			return b, nil
		}
	}
	if b.PDUs, err = fedEntries(ctx, q, `SELECT q.payload_id, p.event_id, p.edu_type, p.json FROM fed_queue_pdus q JOIN fed_payloads p ON p.id = q.payload_id
		WHERE q.destination = ? ORDER BY q.payload_id LIMIT ?`, dest, maxPDUs); err != nil {
		return nil, err
	}
	if b.EDUs, err = fedEntries(ctx, q, `SELECT q.payload_id, p.event_id, p.edu_type, p.json FROM fed_queue_edus q JOIN fed_payloads p ON p.id = q.payload_id
		WHERE q.destination = ? ORDER BY q.payload_id LIMIT ?`, dest, maxEDUs); err != nil {
		return nil, err
	}
	return b, nil
}

func fedEntries(ctx context.Context, q Querier, query string, args ...any) ([]store.FedEntry, error) {
	rows, err := q.Query(ctx, query, args...)
	return collect(rows, err, func(r Rows, e *store.FedEntry) error {
		var eventID, eduType sql.NullString
		if err := r.Scan(&e.ID, &eventID, &eduType, &e.JSON); err != nil {
			return err
		}
		e.EventID, e.EDUType = eventID.String, eduType.String
		return nil
	})
}

func (s *Shared) FedDelivered(ctx context.Context, done []store.FedDone, nowMS int64) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, d := range done {
			for _, t := range []struct {
				table string
				ids   []int64
			}{{"fed_queue_pdus", d.PDUs}, {"fed_queue_edus", d.EDUs}} {
				if len(t.ids) == 0 {
					continue
				}
				cond, args := s.inInts("payload_id", t.ids, []any{d.Destination})
				if _, err := tx.Exec(ctx, `DELETE FROM `+t.table+` WHERE destination = ? AND `+cond, args...); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO fed_destinations (destination, last_success_ts) VALUES (?, ?)
				ON CONFLICT (destination) DO UPDATE SET retry_count = 0, next_attempt_ts = 0, pending_txn = '', last_success_ts = excluded.last_success_ts`,
				d.Destination, nowMS); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Shared) FedFailed(ctx context.Context, dest, txnID string, pdus, edus []int64, retryCount int, nextAttemptTS int64) error {
	return s.b.Tx(ctx, func(tx Querier) error {
		for _, t := range []struct {
			table string
			ids   []int64
		}{{"fed_queue_pdus", pdus}, {"fed_queue_edus", edus}} {
			if len(t.ids) == 0 {
				continue
			}
			cond, args := s.inInts("payload_id", t.ids, []any{dest})
			if _, err := tx.Exec(ctx, `UPDATE `+t.table+` SET pending = true WHERE destination = ? AND NOT pending AND `+cond, args...); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO fed_destinations (destination, retry_count, next_attempt_ts, pending_txn) VALUES (?, ?, ?, ?)
			ON CONFLICT (destination) DO UPDATE SET retry_count = excluded.retry_count, next_attempt_ts = excluded.next_attempt_ts, pending_txn = excluded.pending_txn`,
			dest, retryCount, nextAttemptTS, txnID)
		return err
	})
}

func (s *Shared) FedResetBackoff(ctx context.Context, dest string) error {
	_, err := s.b.Write().Exec(ctx, `UPDATE fed_destinations SET retry_count = 0, next_attempt_ts = 0 WHERE destination = ? AND (retry_count <> 0 OR next_attempt_ts <> 0)`, dest)
	return err
}

func (s *Shared) FedDestinations(ctx context.Context) ([]store.FedDestination, error) {
	// The distinct destinations of each queue by skipping through the
	// primary key (one probe per destination, not a scan of every row).
	rows, err := s.b.Read().Query(ctx, `WITH RECURSIVE
		p(d) AS (SELECT (SELECT min(destination) FROM fed_queue_pdus)
			UNION ALL SELECT (SELECT min(destination) FROM fed_queue_pdus WHERE destination > p.d) FROM p WHERE p.d IS NOT NULL),
		e(d) AS (SELECT (SELECT min(destination) FROM fed_queue_edus)
			UNION ALL SELECT (SELECT min(destination) FROM fed_queue_edus WHERE destination > e.d) FROM e WHERE e.d IS NOT NULL)
		SELECT x.d, coalesce(f.retry_count, 0), coalesce(f.next_attempt_ts, 0), coalesce(f.last_success_ts, 0)
		FROM (SELECT d FROM p WHERE d IS NOT NULL UNION SELECT d FROM e WHERE d IS NOT NULL) x
		LEFT JOIN fed_destinations f ON f.destination = x.d ORDER BY x.d`)
	return collect(rows, err, func(r Rows, d *store.FedDestination) error {
		return r.Scan(&d.Destination, &d.RetryCount, &d.NextAttemptTS, &d.LastSuccessTS)
	})
}

func (s *Shared) FedPrune(ctx context.Context, dest string, max int) (int, error) {
	dropped := 0
	err := s.b.Tx(ctx, func(tx Querier) error {
		dropped = 0
		var n int
		if err := tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM fed_queue_pdus WHERE destination = ?1) + (SELECT count(*) FROM fed_queue_edus WHERE destination = ?1)`, dest).Scan(&n); err != nil {
			return err
		}
		if n <= max {
			return nil
		}
		gone, err := deletedIDs(ctx, tx, `DELETE FROM fed_queue_edus WHERE destination = ?1 AND payload_id IN
			(SELECT payload_id FROM fed_queue_edus WHERE destination = ?1 AND droppable ORDER BY payload_id LIMIT ?2) RETURNING payload_id`, dest, n-max)
		if err != nil {
			return err
		}
		dropped = len(gone)
		_, err = s.collect(ctx, tx, gone)
		return err
	})
	return dropped, err
}
