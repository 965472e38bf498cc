package migrate

// Every table is copied row by row into the PostgreSQL table of the same
// name, over the columns both sides have, unless this file says otherwise.
// A table or column that exists on one side only, and a table whose rows must
// not simply be copied, needs an entry here: the migration refuses to run
// (and TestPlanCoversSchema fails) while anything in the two schemas is not
// accounted for, so a new migration cannot be forgotten. A table that a new
// migration adds to both backends alike needs no entry.

type tableAction int

const (
	actionCopy    tableAction = iota // rows copied (the default)
	actionSkip                       // not copied: the target has its own
	actionRebuild                    // not copied: PostgreSQL derives the rows; counts compared
)

type tableDecision struct {
	action tableAction
	why    string
	// keepTarget: the target's own rows (written by its migrations) stay and
	// do not make it count as holding data. Otherwise a skipped table must be
	// empty in the target.
	keepTarget bool
}

// A decision for a table neither database has is ignored: branches that add
// a table may be merged in any order.
var tableDecisions = map[string]tableDecision{
	"schema_migrations": {actionSkip, "migration bookkeeping: the target's migrations are applied by the PostgreSQL store itself; the applied versions are compared instead", true},
	// SQLite indexes with an FTS5 virtual table (body, name, topic columns),
	// PostgreSQL with tsvector columns keyed by pos. The rows are derived
	// from events: the events table keeps its triggers during the copy
	// (keepTriggers), so every copied searchable event is indexed exactly as
	// the server indexes a new one. Verified by comparing the row counts.
	"event_search": {actionRebuild, "full-text index (SQLite FTS5 → PostgreSQL tsvector), rebuilt by the events insert trigger", false},
	// Migration 0010 (several processes on one PostgreSQL database). The
	// first server process started on the target stores the data
	// directory's signing.key here (the key the copied events are signed
	// with), so the target's table must be empty.
	"server_signing_key": {actionSkip, "PostgreSQL only: the first server start imports the data directory's signing.key", false},
	// Starts at the Unix milliseconds of the migration, above the in-memory
	// typing/presence serials of the SQLite server's sync tokens.
	"ephemeral_serial": {actionSkip, "PostgreSQL only: the cluster-wide typing/presence serial, seeded by its migration", true},
	// Migration 0015 (internal/fedsender), the same in both backends, so
	// copied without an entry: fed_payloads, fed_queue_pdus,
	// fed_queue_edus and fed_destinations. Deliberately copied, not
	// skipped: they hold what other servers have not received yet (events
	// they would otherwise miss), and a pending transaction keeps its ID so
	// a retry from PostgreSQL is recognised (TestFedQueueCopied).
}

// columnDecisions lists columns that exist in one backend's table only,
// "table.column" → why it is fine to leave them out of the copy (a
// PostgreSQL-only column gets its default).
var columnDecisions = map[string]string{}

// seededTables hold rows the migrations themselves insert; the target's seed
// rows are deleted before the source's rows are copied in.
var seededTables = map[string]string{
	"stream": "migration 0001 inserts the row (1, 0); the source's position replaces it",
}

// keepTriggers lists the tables whose PostgreSQL triggers stay enabled during
// the copy. Every other table's triggers are disabled while its rows go in
// (e.g. the devices triggers would take new stream positions and add
// device_list_changes rows, which are copied as they are), and enabled again
// before the commit.
var keepTriggers = map[string]string{
	"events": "its triggers maintain event_search, which is rebuilt that way",
}
