package migrate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"sort"
	"syscall"
	"text/tabwriter"
)

// Usage is the help text of `conclave migrate`.
const Usage = `usage: conclave migrate --from sqlite:PATH --to postgres://USER@HOST/DB

Copies a whole Conclave server (accounts, devices, tokens, keys, backups,
rooms, events, state, receipts, account data, media metadata, stream
positions: every table) from its SQLite database into an empty PostgreSQL
database, in one transaction, then compares the row counts of every table.

STOP THE SERVER FIRST. The SQLite database is locked against writes while it
is copied, and the copy is a snapshot: anything a still-running server wrote
afterwards would be lost. Pending SQLite migrations are applied first (as
'conclave serve' would on start); the PostgreSQL schema is created by the
same migrations the server runs. A target that holds any data is refused.
On an error or a count mismatch nothing is committed and the exit status is 1.

The signing key (signing.key) and the media files stay in the data directory:
afterwards run the server with the same --data-dir (and --media-dir, if set)
and --database postgres://…

flags:
  --from sqlite:PATH       the data directory (holding conclave.db) or the
                           SQLite database file
  --to postgres://…        the PostgreSQL database (must exist and be empty)
`

// Main runs `conclave migrate` with its arguments (after "migrate") and
// returns the exit status: 0 done, 1 failed, 2 bad usage.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "")
	to := fs.String("to", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, Usage)
			return 0
		}
		fmt.Fprintf(stderr, "conclave migrate: %v\n\n%s", err, Usage)
		return 2
	}
	if *from == "" || *to == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "conclave migrate: --from and --to are required (and nothing else)\n\n%s", Usage)
		return 2
	}
	if _, _, err := ParseFrom(*from); err != nil {
		fmt.Fprintln(stderr, "conclave migrate:", err)
		return 2
	}
	if err := CheckTo(*to); err != nil {
		fmt.Fprintln(stderr, "conclave migrate:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := Run(ctx, Options{From: *from, To: *to})
	if rep != nil {
		PrintReport(stdout, rep)
	}
	if err != nil {
		fmt.Fprintln(stderr, "conclave migrate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nmigrated %d rows in %s; stream position %d.\n", rep.Rows, rep.Duration.Round(1e6), rep.StreamPos)
	fmt.Fprintf(stdout, "The signing key and the media files stay in %s: start the server with\n  conclave serve --data-dir %s --database '%s'\n(and --media-dir, if you use one). Keep the SQLite file until you are satisfied.\n",
		rep.DataDir, rep.DataDir, redact(*to))
	return 0
}

// PrintReport writes the per-table summary.
func PrintReport(w io.Writer, rep *Report) {
	tables := append([]TableResult(nil), rep.Tables...)
	sort.Slice(tables, func(i, j int) bool { return tables[i].Name < tables[j].Name })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "table\tSQLite\tPostgreSQL\t\n")
	for _, t := range tables {
		note := t.Action
		if t.Mismatch {
			note = "MISMATCH"
		}
		if t.Action != "copied" && t.Why != "" {
			note += ": " + t.Why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, count(t.SQLite), count(t.PG), note)
	}
	tw.Flush()
}

func count(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}
