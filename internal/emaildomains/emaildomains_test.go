package emaildomains

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const circle = `# the demo circle
finances.gouv.fr     agent.finances.gouv.fr
*.finances.gouv.fr   agent.finances.gouv.fr
interieur.gouv.fr    agent.interieur.gouv.fr
*.gouv.fr            agent.dinum.gouv.fr
*.partenaire.fr      agent.externe.gouv.fr

*                    agent.externe.gouv.fr
`

func mustParse(t *testing.T, s string) *Map {
	t.Helper()
	m, err := Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLookup(t *testing.T) {
	m := mustParse(t, circle)
	for _, c := range []struct {
		email, server string
		external, ok  bool
	}{
		{"jean.martin@finances.gouv.fr", "agent.finances.gouv.fr", false, true},
		{"Jean.Martin@FINANCES.gouv.fr", "agent.finances.gouv.fr", false, true},
		{"a@dgfip.finances.gouv.fr", "agent.finances.gouv.fr", false, true},
		{"a@x.dgfip.finances.gouv.fr", "agent.finances.gouv.fr", false, true},
		{"a@interieur.gouv.fr", "agent.interieur.gouv.fr", false, true},
		// *.interieur.gouv.fr is not in the map: the shorter suffix wins.
		{"a@police.interieur.gouv.fr", "agent.dinum.gouv.fr", false, true},
		{"a@education.gouv.fr", "agent.dinum.gouv.fr", false, true},
		// *.gouv.fr does not match gouv.fr itself: the catch-all does.
		{"a@gouv.fr", "agent.externe.gouv.fr", true, true},
		{"a@gmail.com", "agent.externe.gouv.fr", true, true},
		// A rule naming the externals' server makes externals too.
		{"a@b.partenaire.fr", "agent.externe.gouv.fr", true, true},
		{"not an address", "", false, false},
		{"Jean <jean@finances.gouv.fr>", "", false, false},
		{"jean@", "", false, false},
		{"@finances.gouv.fr", "", false, false},
		{"jean@finances..gouv.fr", "", false, false},
		{"jean@[127.0.0.1]", "", false, false},
	} {
		server, external, ok := m.Lookup(c.email)
		if server != c.server || external != c.external || ok != c.ok {
			t.Errorf("Lookup(%q) = %q, %v, %v; want %q, %v, %v", c.email, server, external, ok, c.server, c.external, c.ok)
		}
	}
	if got := m.ExternalServer(); got != "agent.externe.gouv.fr" {
		t.Errorf("ExternalServer = %q", got)
	}
	want := []string{"agent.dinum.gouv.fr", "agent.externe.gouv.fr", "agent.finances.gouv.fr", "agent.interieur.gouv.fr"}
	if got := m.Servers(); !reflect.DeepEqual(got, want) {
		t.Errorf("Servers = %v", got)
	}
	if !m.Names("agent.dinum.gouv.fr") || m.Names("elsewhere.org") {
		t.Error("Names")
	}
}

func TestOrderDoesNotMatter(t *testing.T) {
	lines := strings.Split(strings.TrimSpace(circle), "\n")
	for i, j := 0, len(lines)-1; i < j; i, j = i+1, j-1 {
		lines[i], lines[j] = lines[j], lines[i]
	}
	a, b := mustParse(t, circle), mustParse(t, strings.Join(lines, "\n"))
	if !reflect.DeepEqual(a, b) {
		t.Error("reversed file gives another map")
	}
}

func TestWithoutCatchAllUnknownDomainsAreRefused(t *testing.T) {
	m := mustParse(t, "a.org s1\n*.b.org s2:8448\n")
	if _, _, ok := m.Lookup("x@c.org"); ok {
		t.Error("c.org matched")
	}
	if s, ext, ok := m.Lookup("x@y.b.org"); s != "s2:8448" || ext || !ok {
		t.Errorf("y.b.org: %q %v %v", s, ext, ok)
	}
	var nilMap *Map
	if _, _, ok := nilMap.Lookup("x@a.org"); ok {
		t.Error("nil map matched")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "no rules"},
		{"# only a comment\n", "no rules"},
		{"a.org\n", "line 1: want a pattern and a server name"},
		{"a.org s1 extra\n", "line 1: want a pattern"},
		{"a.org s1\na.org s2\n", "line 2: pattern \"a.org\" appears twice"},
		{"*.a.org s1\n\n*.A.org s2\n", "line 3: pattern \"*.a.org\" appears twice"},
		{"* s1\n* s2\n", "line 2: pattern \"*\" appears twice"},
		{"a.org bad/name\n", "line 1: \"bad/name\" is not a valid server name"},
		{"*a.org s1\n", "line 1: \"*a.org\" is not a domain"},
		{"*.  s1\n", "line 1: \"*.\" is not *. followed"},
		{"a..org s1\n", "not a domain"},
		{"-a.org s1\n", "not a domain"},
		{"*.*.org s1\n", "is not *. followed by a domain"},
		{"a_b.org s1\n", "not a domain"},
	} {
		_, err := Parse(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want %q", c.in, err, c.want)
		}
	}
	big := strings.Repeat("#", MaxFileBytes+1)
	if _, err := Parse(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "domains")
	if err := os.WriteFile(path, []byte("\ufeffa.org s1\n* ext\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, _, _ := m.Lookup("x@a.org"); s != "s1" {
		t.Errorf("a.org → %q", s)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.HasPrefix(err.Error(), "email_domains: ") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("a.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path+": line 1") {
		t.Errorf("bad file: %v", err)
	}
}

func TestCanonical(t *testing.T) {
	for in, want := range map[string]string{
		"Jean.Martin@X.Gouv.FR":         "jean.martin@x.gouv.fr",
		"  a+tag@b.org ":                "a+tag@b.org",
		"o'brien@b.org":                 "o'brien@b.org",
		"a@b":                           "a@b",
		"\"a b\"@b.org":                 "",
		"a@b.org, c@d.org":              "",
		"a@b.org (comment)":             "",
		"<a@b.org>":                     "",
		"a@b.org\r\nBcc: c@d.org":       "",
		"a@" + strings.Repeat("b", 260): "",
	} {
		got, err := Canonical(in)
		if want == "" {
			if err == nil {
				t.Errorf("Canonical(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
