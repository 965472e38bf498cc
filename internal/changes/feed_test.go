package changes

import (
	"context"
	"testing"
)

func TestFedTrackerAppliesNotificationsInOrder(t *testing.T) {
	db := int64(10)
	tr := NewFed(10, func(context.Context) (int64, error) { return db, nil })
	other := NewFed(10, func(context.Context) (int64, error) { return db, nil })
	k := Key{ToDevice, "@a:x"}

	// Another process's write: unknown here until its notification is
	// applied, and not heard (so no sync reads past it) before.
	w := other.Begin(k, Key{DeviceLists, ""})
	payload := Payload(w.Context(context.Background()))
	db = 11
	if tr.Heard() != 10 {
		t.Fatal("heard before the notification")
	}
	remote, unknown := tr.Apply(10, 11, payload)
	if unknown || len(remote) != 2 || remote[1] != AnyDeviceListChange {
		t.Fatalf("remote keys: %v %v", remote, unknown)
	}
	tr.Advance(11)
	if tr.Heard() != 11 || !tr.Changed(k, 10, 11) || tr.Changed(k, 11, 11) {
		t.Fatal("the other process's change is not recorded at its position")
	}
	if !tr.Changed(AnyDeviceListChange, 10, 11) {
		t.Fatal("another process's device-list change counts for every room")
	}

	// This process's own write: recorded by Done, and Apply returns nothing.
	own := tr.Begin(Key{AccountData, "@b:x"})
	payload = Payload(own.Context(context.Background()))
	db = 12
	go func() {
		tr.Apply(11, 12, payload)
		tr.Advance(12)
	}()
	own.Done(12) // waits until heard
	if tr.Heard() < 12 || !tr.Changed(Key{AccountData, "@b:x"}, 11, 12) {
		t.Fatal("own write")
	}

	// A write that marked nothing: anything may have changed up to it.
	if _, unknown := tr.Apply(12, 13, ""); !unknown || tr.Known(12) || !tr.Known(13) {
		t.Fatal("a notification without keys must raise the floor")
	}
	tr.Advance(13)
	// Reconnection: everything before the position read then is forgotten.
	tr.Resync(20)
	if tr.Heard() != 20 || tr.Known(19) || !tr.Known(20) {
		t.Fatal("resync")
	}
}

// Notifications come from the database, but a payload is text: whatever it
// holds, Apply neither panics nor records a key it did not read, and a
// payload it cannot read makes everything up to its position unknown.
func FuzzApply(f *testing.F) {
	f.Add("")
	f.Add("abc\n3:@a:x\n4:")
	f.Add("abc\n99:x")
	f.Add("abc\n:x\n-1:y")
	f.Fuzz(func(t *testing.T, payload string) {
		tr := NewFed(10, func(context.Context) (int64, error) { return 11, nil })
		_, unknown := tr.Apply(10, 11, payload)
		tr.Advance(11)
		if tr.Heard() != 11 {
			t.Fatal("not heard")
		}
		if unknown && tr.Known(10) {
			t.Fatal("an unreadable payload left the range known")
		}
	})
}
