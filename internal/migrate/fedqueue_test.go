package migrate_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"conclave/internal/migrate"
	"conclave/internal/store"
	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
	"conclave/internal/store/storetest/pgtest"
)

// The outbound federation queue is copied (decisions.go): what a SQLite
// server had not delivered yet goes out from PostgreSQL, in order, with the
// pending transaction's ID and the back-off as they were, and items queued
// after the migration come after the copied ones.
func TestFedQueueCopied(t *testing.T) {
	needPostgres(t)
	ctx := context.Background()
	dir := t.TempDir()
	src, err := sqlite.Open(ctx, filepath.Join(dir, migrate.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	pdu := func(id string) store.FedEnqueue {
		return store.FedEnqueue{Destinations: []string{"a.test", "b.test"}, Item: store.FedItem{EventID: id, JSON: []byte(`{"id":"` + id + `"}`)}}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(src.FedEnqueue(ctx, []store.FedEnqueue{pdu("$1"), pdu("$2"),
		{Destinations: []string{"a.test"}, Item: store.FedItem{EDUType: "m.typing", JSON: []byte(`{"t":1}`), CoalesceKey: "k"}},
		{Destinations: []string{"a.test"}, Item: store.FedItem{EDUType: "m.direct_to_device", JSON: []byte(`{"d":1}`), Keep: true}},
	}))
	b, err := src.FedNextBatch(ctx, "a.test", 1, 100)
	must(err)
	must(src.FedFailed(ctx, "a.test", "txn-9", []int64{b.PDUs[0].ID}, nil, 2, 99999))
	must(src.Close())

	dsn := pgtest.NewDatabase(t)
	if _, err := migrate.Run(ctx, migrate.Options{From: "sqlite:" + dir, To: dsn}); err != nil {
		t.Fatal(err)
	}
	dst, err := postgres.Open(ctx, dsn)
	must(err)
	defer dst.Close()
	must(dst.FedEnqueue(ctx, []store.FedEnqueue{pdu("$3"),
		{Destinations: []string{"a.test"}, Item: store.FedItem{EDUType: "m.typing", JSON: []byte(`{"t":2}`), CoalesceKey: "k"}}}))
	ds, err := dst.FedDestinations(ctx)
	must(err)
	if len(ds) != 2 || ds[0] != (store.FedDestination{Destination: "a.test", RetryCount: 2, NextAttemptTS: 99999}) {
		t.Fatalf("destinations %+v", ds)
	}
	b, err = dst.FedNextBatch(ctx, "a.test", 50, 100)
	must(err)
	if b.TxnID != "txn-9" || len(b.PDUs) != 1 || b.PDUs[0].EventID != "$1" {
		t.Fatalf("pending transaction %+v", b)
	}
	must(dst.FedDelivered(ctx, []store.FedDone{{Destination: "a.test", PDUs: []int64{b.PDUs[0].ID}}}, 1))
	b, err = dst.FedNextBatch(ctx, "a.test", 50, 100)
	must(err)
	var got []string
	for _, e := range b.PDUs {
		got = append(got, e.EventID)
	}
	for _, e := range b.EDUs {
		got = append(got, e.EDUType+string(e.JSON))
	}
	if want := []string{"$2", "$3", `m.direct_to_device{"d":1}`, `m.typing{"t":2}`}; !slices.Equal(got, want) {
		t.Fatalf("queue after migration %v, want %v", got, want)
	}
}
