package receipts

import (
	"encoding/json"
	"testing"

	"conclave/internal/store"
)

func TestByRoom(t *testing.T) {
	rows := []store.Receipt{
		{RoomID: "!a", UserID: "@u", Type: TypeRead, EventID: "$1", TS: 1},
		{RoomID: "!a", UserID: "@v", Type: TypeReadPrivate, EventID: "$1", TS: 2},
		{RoomID: "!a", UserID: "@u", Type: TypeReadPrivate, ThreadID: "main", EventID: "$2", TS: 3},
		{RoomID: "!b", UserID: "@v", Type: TypeReadPrivate, EventID: "$9", TS: 4},
		{RoomID: "!a", UserID: "@u", Type: TypeRead, EventID: "$1", TS: 5}, // later row wins
	}
	got := ByRoom(rows, "@u")
	if _, ok := got["!b"]; ok {
		t.Fatal("room with only others' private receipts must be absent")
	}
	b, _ := json.Marshal(got["!a"])
	want := `{"$1":{"m.read":{"@u":{"ts":5}}},"$2":{"m.read.private":{"@u":{"ts":3,"thread_id":"main"}}}}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
	ev, _ := json.Marshal(Event(got["!a"]))
	if string(ev) != `{"content":`+want+`,"type":"m.receipt"}` {
		t.Fatalf("event: %s", ev)
	}
	if len(ByRoom(rows, "@v")["!b"]) != 1 {
		t.Fatal("owner sees own private receipt")
	}
	// MSC4102: an unthreaded and a threaded receipt for one event: the
	// unthreaded one is shown, in either order.
	for _, order := range [][2]string{{"", "$root"}, {"$root", ""}} {
		rows := []store.Receipt{
			{RoomID: "!t", UserID: "@u", Type: TypeRead, EventID: "$b", ThreadID: order[0], TS: 1},
			{RoomID: "!t", UserID: "@u", Type: TypeRead, EventID: "$b", ThreadID: order[1], TS: 2},
		}
		if got := ByRoom(rows, "@u")["!t"]["$b"][TypeRead]["@u"]; got.ThreadID != "" {
			t.Fatalf("order %q: the threaded receipt was shown: %+v", order, got)
		}
	}
	for id, ok := range map[string]bool{"main": true, "$e": true, "": false, "x": false, "$": false} {
		if ValidThreadID(id) != ok {
			t.Errorf("ValidThreadID(%q)", id)
		}
	}
}
