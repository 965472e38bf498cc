package fedtest

import (
	"encoding/json"
	"testing"

	"conclave/internal/homeserver/hstest"
)

type publicRoomsAnswer struct {
	Chunk []struct {
		RoomID           string `json:"room_id"`
		Name             string `json:"name"`
		NumJoinedMembers int    `json:"num_joined_members"`
	} `json:"chunk"`
	NextBatch string `json:"next_batch"`
	PrevBatch string `json:"prev_batch"`
	Total     int    `json:"total_room_count_estimate"`
}

func decodePublicRooms(t *testing.T, r *hstest.Response) publicRoomsAnswer {
	t.Helper()
	var out publicRoomsAnswer
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestPublicRoomsOverFederation: a client of A reads B's room directory
// through A (GET and POST /publicRooms?server=B), with B's filtering and
// pagination.
func TestPublicRoomsOverFederation(t *testing.T) {
	ss := hstest.StartFederation(t, 2)
	a, b := ss[0], ss[1]
	alice, bob, carol := a.CreateUser(t, "alice"), b.CreateUser(t, "bob"), b.CreateUser(t, "carol")
	B := b.ServerName

	garden := b.MustOK(t, "POST", "/_matrix/client/v3/createRoom", bob.Token, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Garden"}).Str("room_id")
	kitchen := b.MustOK(t, "POST", "/_matrix/client/v3/createRoom", bob.Token, map[string]any{"preset": "public_chat", "visibility": "public", "name": "Kitchen"}).Str("room_id")
	b.MustOK(t, "POST", hstest.Path("/join/%s", kitchen), carol.Token, map[string]any{})
	b.MustOK(t, "POST", "/_matrix/client/v3/createRoom", bob.Token, map[string]any{"preset": "private_chat", "name": "Hidden"})

	all := decodePublicRooms(t, a.MustOK(t, "GET", "/_matrix/client/v3/publicRooms?server="+B, "", nil))
	if len(all.Chunk) != 2 || all.Chunk[0].RoomID != kitchen || all.Chunk[0].NumJoinedMembers != 2 || all.Chunk[1].RoomID != garden || all.Total != 2 {
		t.Fatalf("B's directory through A: %+v", all)
	}
	// Pages.
	p1 := decodePublicRooms(t, a.MustOK(t, "GET", "/_matrix/client/v3/publicRooms?limit=1&server="+B, "", nil))
	if len(p1.Chunk) != 1 || p1.Chunk[0].RoomID != kitchen || p1.NextBatch == "" {
		t.Fatalf("first page %+v", p1)
	}
	p2 := decodePublicRooms(t, a.MustOK(t, "GET", "/_matrix/client/v3/publicRooms?limit=1&since="+p1.NextBatch+"&server="+B, "", nil))
	if len(p2.Chunk) != 1 || p2.Chunk[0].RoomID != garden || p2.NextBatch != "" || p2.PrevBatch == "" {
		t.Fatalf("second page %+v", p2)
	}
	// A filter: POSTed to B.
	f := decodePublicRooms(t, a.MustOK(t, "POST", "/_matrix/client/v3/publicRooms?server="+B, alice.Token,
		map[string]any{"filter": map[string]any{"generic_search_term": "gard"}, "limit": 10}))
	if len(f.Chunk) != 1 || f.Chunk[0].RoomID != garden || f.Chunk[0].Name != "Garden" {
		t.Fatalf("filtered %+v", f)
	}
	none := decodePublicRooms(t, a.MustOK(t, "POST", "/_matrix/client/v3/publicRooms?server="+B, alice.Token,
		map[string]any{"filter": map[string]any{"generic_search_term": "nothing like it"}}))
	if len(none.Chunk) != 0 {
		t.Fatalf("filter matching nothing: %+v", none)
	}
	// No third-party networks on B; include_all_networks lists the same.
	tp := decodePublicRooms(t, a.MustOK(t, "POST", "/_matrix/client/v3/publicRooms?server="+B, alice.Token, map[string]any{"third_party_instance_id": "irc"}))
	if len(tp.Chunk) != 0 {
		t.Fatalf("third-party network: %+v", tp)
	}
	if n := len(decodePublicRooms(t, a.MustOK(t, "GET", "/_matrix/client/v3/publicRooms?include_all_networks=true&server="+B, "", nil)).Chunk); n != 2 {
		t.Fatalf("include_all_networks: %d rooms", n)
	}
	// B's refusal reaches the client as it came.
	r := a.Do(t, "POST", "/_matrix/client/v3/publicRooms?server="+B, alice.Token, map[string]any{"include_all_networks": true, "third_party_instance_id": "irc"})
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Fatalf("both network fields: %d %s", r.Status, r.Body)
	}
	r = a.Do(t, "GET", "/_matrix/client/v3/publicRooms?since=bogus&server="+B, "", nil)
	if r.Status != 400 || r.Errcode() != "M_INVALID_PARAM" {
		t.Fatalf("bad since: %d %s", r.Status, r.Body)
	}
	// Outside the closed circle: never asked. Not a server name: 400.
	if r := a.Do(t, "GET", "/_matrix/client/v3/publicRooms?server=elsewhere.example", "", nil); r.Status != 403 || r.Errcode() != "M_FORBIDDEN" {
		t.Fatalf("outside the circle: %d %s", r.Status, r.Body)
	}
	if r := a.Do(t, "GET", "/_matrix/client/v3/publicRooms?server=not%20a%20name", "", nil); r.Status != 400 {
		t.Fatalf("invalid server name: %d %s", r.Status, r.Body)
	}
	// A's own directory is still A's.
	if n := len(decodePublicRooms(t, a.MustOK(t, "GET", "/_matrix/client/v3/publicRooms", "", nil)).Chunk); n != 0 {
		t.Fatalf("A's directory lists %d rooms", n)
	}
}
