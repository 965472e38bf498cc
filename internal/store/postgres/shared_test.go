package postgres

import "testing"

func TestRenumber(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`WHERE x > ?2 AND y = ?1 OR z <> ?1`, `WHERE x > $2 AND y = $1 OR z <> $1`},
		{`WHERE a LIKE ? ESCAPE '\' AND b = '?' AND "q?" = ? -- ?` + "\n" + `AND c = ? /* ? */`, `WHERE a LIKE $1 ESCAPE '\' AND b = '?' AND "q?" = $2 -- ?` + "\n" + `AND c = $3 /* ? */`},
		{`WHERE a = 'it''s ?' AND b = ?`, `WHERE a = 'it''s ?' AND b = $1`},
		{`WHERE a = 'unclosed ?`, `WHERE a = 'unclosed ?`},
	} {
		if got := renumber(c.in); got != c.want {
			t.Errorf("renumber(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
