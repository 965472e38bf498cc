package federation

import (
	"encoding/json"
	"slices"
	"testing"
)

// Joins offer every room version, 1 and 2 included; templates of version 1
// and 2 rooms name events in pairs.
func TestSupportedRoomVersions(t *testing.T) {
	got := SupportedRoomVersions()
	if !slices.Contains(got, "1") || !slices.Contains(got, "2") || !slices.Contains(got, "12") {
		t.Fatalf("supported %v", got)
	}
	var tm template
	if err := json.Unmarshal([]byte(`{"prev_events":[["$a:x",{}],"$b"],"auth_events":[["$c:x",{"sha256":"x"}]]}`), &tm); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tm.Prev, eventRefs{"$a:x", "$b"}) || !slices.Equal(tm.Auth, eventRefs{"$c:x"}) {
		t.Fatalf("template %+v", tm)
	}
	if json.Unmarshal([]byte(`{"prev_events":[[1]]}`), &tm) == nil {
		t.Fatal("a pair without an event ID was taken")
	}
}
