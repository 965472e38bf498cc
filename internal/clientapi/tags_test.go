package clientapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"

	"conclave/internal/homeserver/hstest"
)

// Room tags (Client-Server API, "Room Tagging"): set, list, delete, seen in
// /sync as m.tag room account data; concurrent changes all land.
func TestRoomTags(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	bob := s.CreateUser(t, "bob")
	room := s.MustOK(t, "POST", "/_matrix/client/v3/createRoom", alice.Token, map[string]any{}).Str("room_id")
	tags := hstest.Path("/user/%s/rooms/%s/tags", alice.UserID, room)
	tag := func(name string) string { return tags + "/" + name }

	if r := s.MustOK(t, "GET", tags, alice.Token, nil); string(r.Body) != `{"tags":{}}` {
		t.Fatalf("no tags: %s", r.Body)
	}
	s.MustOK(t, "PUT", tag("m.favourite"), alice.Token, map[string]any{"order": 0.25})
	s.MustOK(t, "PUT", tag("u.work"), alice.Token, map[string]any{})
	s.MustOK(t, "DELETE", tag("u.nothing"), alice.Token, nil)
	r := s.MustOK(t, "GET", tags, alice.Token, nil)
	var got struct {
		Tags map[string]map[string]any `json:"tags"`
	}
	json.Unmarshal(r.Body, &got)
	if len(got.Tags) != 2 || got.Tags["m.favourite"]["order"] != 0.25 || got.Tags["u.work"] == nil {
		t.Fatalf("tags: %s", r.Body)
	}
	s.MustOK(t, "DELETE", tag("u.work"), alice.Token, nil)

	// /sync carries them as the room's m.tag account data.
	sr := s.MustOK(t, "GET", "/_matrix/client/v3/sync", alice.Token, nil)
	var sy struct {
		Rooms struct {
			Join map[string]struct {
				AccountData struct {
					Events []struct {
						Type    string `json:"type"`
						Content struct {
							Tags map[string]json.RawMessage `json:"tags"`
						} `json:"content"`
					} `json:"events"`
				} `json:"account_data"`
			} `json:"join"`
		} `json:"rooms"`
	}
	json.Unmarshal(sr.Body, &sy)
	found := false
	for _, ev := range sy.Rooms.Join[room].AccountData.Events {
		if ev.Type == "m.tag" {
			found = len(ev.Content.Tags) == 1 && ev.Content.Tags["m.favourite"] != nil
		}
	}
	if !found {
		t.Fatalf("sync has no m.tag with m.favourite alone: %s", sr.Body)
	}

	// Errors, and nothing stored by them.
	expectErr(t, s.Do(t, "GET", tags, bob.Token, nil), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", tag("u.x"), bob.Token, map[string]any{}), 403, "M_FORBIDDEN")
	expectErr(t, s.Do(t, "PUT", tag("u.x"), alice.Token, map[string]any{"order": "first"}), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", tag("u.x"), alice.Token, `[1]`), 400, "M_BAD_JSON")
	expectErr(t, s.Do(t, "PUT", tag(strings.Repeat("t", 256)), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")
	expectErr(t, s.Do(t, "PUT", hstest.Path("/user/%s/rooms/%s/tags/u.x", alice.UserID, "not-a-room"), alice.Token, map[string]any{}), 400, "M_INVALID_PARAM")

	// Twenty tags set at once from as many requests: none is lost.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := s.Do(t, "PUT", tag(fmt.Sprintf("u.c%d", i)), alice.Token, map[string]any{}); r.Status != 200 {
				t.Errorf("concurrent tag %d: %d %s", i, r.Status, r.Body)
			}
		}()
	}
	wg.Wait()
	got.Tags = nil
	json.Unmarshal(s.MustOK(t, "GET", tags, alice.Token, nil).Body, &got)
	if len(got.Tags) != 21 {
		t.Fatalf("after 20 concurrent tags: %d tags", len(got.Tags))
	}
}
