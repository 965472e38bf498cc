package storetest

import (
	"testing"

	"conclave/internal/store"
)

// testFedTxns: received transactions' answers, per origin and ID; the first
// answer stays; pruning by age.
func testFedTxns(t *testing.T, s store.Store) {
	_, err := s.FedTxnAnswer(ctx(), "a.example", "t1")
	wantErr(t, err, store.ErrNotFound)
	must(t, s.FedTxnRecord(ctx(), "a.example", "t1", []byte(`{"pdus":{}}`), 1000))
	must(t, s.FedTxnRecord(ctx(), "a.example", "t1", []byte(`{"pdus":{"$x":{}}}`), 1001))
	must(t, s.FedTxnRecord(ctx(), "b.example", "t1", []byte(`{"pdus":{"$b":{}}}`), 5000))
	got, err := s.FedTxnAnswer(ctx(), "a.example", "t1")
	must(t, err)
	equal(t, "first answer", string(got), `{"pdus":{}}`)
	got, err = s.FedTxnAnswer(ctx(), "b.example", "t1")
	must(t, err)
	equal(t, "another origin's", string(got), `{"pdus":{"$b":{}}}`)
	n, err := s.FedTxnPrune(ctx(), 2000)
	must(t, err)
	equal(t, "pruned", n, 1)
	_, err = s.FedTxnAnswer(ctx(), "a.example", "t1")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.FedTxnAnswer(ctx(), "b.example", "t1")
	must(t, err)
}
