package threepid

import "testing"

func TestNamesFromAddress(t *testing.T) {
	for _, c := range []struct{ addr, local, name string }{
		{"jean.martin@x.gouv.fr", "jean.martin-x.gouv.fr", "Jean Martin [X]"},
		{"foo.bar@education.gouv.fr", "foo.bar-education.gouv.fr", "Foo Bar [Education]"},
		{"foo-bar.baz@nikan.com", "foo-bar.baz-nikan.com", "Foo-Bar Baz [Nikan]"},
		{"a.b@dgfip.finances.gouv.fr", "a.b-dgfip.finances.gouv.fr", "A B [Finances]"},
		{"agent@gouv.fr", "agent-gouv.fr", "Agent [Gouv]"},
		{"o'neil+tag@sub.example.org", "oneiltag-sub.example.org", "O'neil+tag [Example]"},
		{"élise@x.fr", "lise-x.fr", "Élise [X]"},
	} {
		if got := Localpart(c.addr); got != c.local {
			t.Errorf("Localpart(%q) = %q, want %q", c.addr, got, c.local)
		}
		if got := DisplayName(c.addr); got != c.name {
			t.Errorf("DisplayName(%q) = %q, want %q", c.addr, got, c.name)
		}
	}
}
