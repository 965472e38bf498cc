package sqlite

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"

	"conclave/internal/store"
)

func TestDeviceListChangesMemberships(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pos := func() int64 { p, _ := db.MaxStreamPos(ctx); return p }
	member := func(room, user, membership string) {
		t.Helper()
		err := db.tx(ctx, func(tx *Tx) error {
			p, err := nextPos(ctx, tx, 1)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO memberships (room_id, user_id, membership, event_id, pos) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, pos = excluded.pos`, room, user, membership, "$e", p)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	keysChanged := func(user string) {
		t.Helper()
		if err := db.CreateDevice(ctx, &store.Device{UserID: user, DeviceID: "D" + user[1:2] + string(rune('0'+pos()%10))}, store.NewToken{AccessHash: []byte(user + string(rune(pos())))}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(from int64, wantChanged, wantLeft []string) {
		t.Helper()
		c, l, err := db.DeviceListChanges(ctx, "@a:x", from, pos())
		if err != nil {
			t.Fatal(err)
		}
		if c == nil {
			c = []string{}
		}
		if l == nil {
			l = []string{}
		}
		if !reflect.DeepEqual(c, wantChanged) || !reflect.DeepEqual(l, wantLeft) {
			t.Fatalf("from %d: changed %v left %v; want %v %v", from, c, l, wantChanged, wantLeft)
		}
	}
	member("!r", "@a:x", "join")
	member("!r", "@b:x", "join")
	member("!s", "@c:x", "join") // c shares nothing with a
	p0 := pos()
	keysChanged("@a:x")
	keysChanged("@b:x")
	keysChanged("@c:x")
	check(p0, []string{"@a:x", "@b:x"}, []string{})
	// d joins a's room: d appears in changed without a key change.
	p1 := pos()
	member("!r", "@d:x", "join")
	check(p1, []string{"@d:x"}, []string{})
	// b leaves: left.
	p2 := pos()
	member("!r", "@b:x", "leave")
	check(p2, []string{}, []string{"@b:x"})
	// a joins c's room: c is changed; then a leaves it: c is left.
	p3 := pos()
	member("!s", "@a:x", "join")
	check(p3, []string{"@c:x"}, []string{})
	p4 := pos()
	member("!s", "@a:x", "leave")
	check(p4, []string{}, []string{"@c:x"})
	// d is in both rooms; a leaving one of them does not make d left.
	member("!s", "@a:x", "join")
	member("!s", "@d:x", "join")
	p5 := pos()
	member("!s", "@a:x", "leave")
	check(p5, []string{}, []string{"@c:x"})
}
