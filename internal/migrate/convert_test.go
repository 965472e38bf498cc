package migrate

import (
	"reflect"
	"strings"
	"testing"
)

func TestConverters(t *testing.T) {
	for _, c := range []struct {
		sqliteType, pgType string
		in, want           any
		err                string
	}{
		{"INTEGER", "boolean", int64(1), true, ""},
		{"INTEGER", "boolean", int64(0), false, ""},
		{"INTEGER", "boolean", nil, nil, ""},
		{"INTEGER", "boolean", int64(2), nil, "cannot become boolean"},
		{"INTEGER", "boolean", "1", nil, "cannot become boolean"},
		{"BLOB", "bytea", []byte{1, 2}, []byte{1, 2}, ""},
		{"BLOB", "bytea", []byte(nil), []byte{}, ""},
		{"BLOB", "bytea", "ab", []byte("ab"), ""},
		{"BLOB", "bytea", int64(3), nil, "cannot become bytea"},
		{"TEXT", "text", "é", "é", ""},
		{"TEXT", "text", []byte("x"), "x", ""},
		{"TEXT", "text", int64(42), "42", ""},
		{"TEXT", "text", "\xff", nil, "not UTF-8"},
		{"TEXT", "text", "a\x00b", nil, "NUL"},
		{"TEXT", "text", 1.5, nil, "cannot become text"},
		{"INTEGER", "bigint", int64(-7), int64(-7), ""},
		{"INTEGER", "integer", 3.0, int64(3), ""},
		{"INTEGER", "bigint", 3.5, nil, "cannot become integer"},
		{"INTEGER", "bigint", "7", nil, "cannot become integer"},
		{"REAL", "double precision", int64(2), 2.0, ""},
		{"TEXT", "jsonb", `{"a":1}`, `{"a":1}`, ""},
		{"BLOB", "json", []byte(`[1]`), `[1]`, ""},
		{"TEXT", "jsonb", `{"a":`, nil, "not valid JSON"},
	} {
		conv, err := converterFor(c.sqliteType, c.pgType)
		if err != nil {
			t.Fatal(err)
		}
		got, err := conv(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s→%s %#v: error %v, want %q", c.sqliteType, c.pgType, c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s→%s %#v = %#v, %v; want %#v", c.sqliteType, c.pgType, c.in, got, err, c.want)
		}
	}
	for _, pg := range []string{"tsvector", "timestamp with time zone", "numeric", "ARRAY"} {
		if _, err := converterFor("TEXT", pg); err == nil || !strings.Contains(err.Error(), "add one in internal/migrate/convert.go") {
			t.Errorf("%s: %v", pg, err)
		}
	}
}

func TestPlan(t *testing.T) {
	st := func(name string, cols ...string) *sqliteTable {
		tb := &sqliteTable{name: name, columns: cols, types: map[string]string{}}
		for _, c := range cols {
			tb.types[c] = "INTEGER"
		}
		return tb
	}
	pt := func(name string, cols ...string) *pgTable {
		tb := &pgTable{name: name}
		for _, c := range cols {
			tb.columns = append(tb.columns, pgColumn{name: c, dataType: "bigint"})
		}
		return tb
	}
	src := map[string]*sqliteTable{"schema_migrations": st("schema_migrations", "version"), "event_search": st("event_search", "body"),
		"zoo": st("zoo", "id"), "animals": st("animals", "id", "zoo_id", "pos"), "stream": st("stream", "id", "pos")}
	dst := map[string]*pgTable{"schema_migrations": pt("schema_migrations", "version"), "event_search": pt("event_search", "pos"),
		"zoo": pt("zoo", "id"), "animals": pt("animals", "id", "zoo_id", "pos"), "stream": pt("stream", "id", "pos")}
	dst["zoo"].columns[0].sequence = "zoo_id_seq"
	plans, err := plan(src, dst, map[string][]string{"animals": {"zoo"}}, map[string]bool{"animals": true, "events": true})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range plans {
		names = append(names, p.name)
	}
	// Alphabetical, each table's foreign-key targets pulled ahead of it.
	if want := []string{"zoo", "animals", "event_search", "schema_migrations", "stream"}; !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
	byName := map[string]*tablePlan{}
	for _, p := range plans {
		byName[p.name] = p
	}
	if p := byName["animals"]; p.action != actionCopy || !p.disableTriggers || !p.hasPos || len(p.columns) != 3 {
		t.Errorf("animals: %+v", p)
	}
	if p := byName["zoo"]; len(p.sequences) != 1 || p.disableTriggers {
		t.Errorf("zoo: %+v", p)
	}
	if byName["stream"].seeded != true || byName["event_search"].action != actionRebuild || byName["schema_migrations"].action != actionSkip {
		t.Error("decisions not applied")
	}

	// One-sided tables and columns, all reported at once.
	src["only_sqlite"] = st("only_sqlite", "x")
	dst["only_pg"] = pt("only_pg", "x")
	src["zoo"] = st("zoo", "id", "old")
	dst["animals"] = pt("animals", "id", "zoo_id", "pos", "new")
	_, err = plan(src, dst, nil, nil)
	for _, want := range []string{"table only_sqlite exists only in SQLite", "table only_pg exists only in PostgreSQL",
		"column zoo.old exists only in SQLite", "column animals.new exists only in PostgreSQL"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
