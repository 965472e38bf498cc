package authrules

import (
	"encoding/json"
	"testing"

	"conclave/internal/event"
)

func createEvent(r *room, content string) *event.PDU {
	e := &event.PDU{EventID: "$c2", RoomID: r.id, Sender: alice, Type: TypeCreate, StateKey: sk(""),
		Content: json.RawMessage(content), Version: r.v}
	if r.v.RoomIDFromCreateEvent {
		e.RoomID = ""
	}
	return e
}

func TestCreateRules(t *testing.T) {
	withCreator := func(r *room, rest string) string {
		if r.v.CreatorIsSender {
			return "{" + rest + "}"
		}
		if rest != "" {
			rest = "," + rest
		}
		return `{"creator":"@alice:a.example"` + rest + "}"
	}
	runCases(t, []ruleCase{
		{name: "valid", build: func(r *room) *event.PDU { return createEvent(r, withCreator(r, `"room_version":"`+r.v.ID+`"`)) }},
		{name: "no room_version is fine", build: func(r *room) *event.PDU { return createEvent(r, withCreator(r, "")) }},
		{name: "prev_events", want: "create.prev_events", build: func(r *room) *event.PDU {
			e := createEvent(r, withCreator(r, ""))
			e.PrevEvents = []string{"$x"}
			return e
		}},
		{name: "room_id domain mismatch", versions: versions(1, 11), want: "create.room_id", build: func(r *room) *event.PDU {
			e := createEvent(r, withCreator(r, ""))
			e.RoomID = "!room:b.example"
			return e
		}},
		{name: "room_id without domain", versions: versions(1, 11), want: "create.room_id", build: func(r *room) *event.PDU {
			e := createEvent(r, withCreator(r, ""))
			e.RoomID = "!room"
			return e
		}},
		{name: "v12 room_id present", versions: []int{12}, want: "create.room_id", build: func(r *room) *event.PDU {
			e := createEvent(r, withCreator(r, ""))
			e.RoomID = "!create"
			return e
		}},
		{name: "unknown room_version", want: "create.room_version", build: func(r *room) *event.PDU {
			return createEvent(r, withCreator(r, `"room_version":"99"`))
		}},
		{name: "non-string room_version", want: "create.room_version", build: func(r *room) *event.PDU {
			return createEvent(r, withCreator(r, `"room_version":10`))
		}},
		{name: "no creator v1-10", versions: versions(1, 10), want: "create.creator", build: func(r *room) *event.PDU {
			return createEvent(r, `{"room_version":"1"}`)
		}},
		{name: "no creator v11+", versions: []int{11, 12}, build: func(r *room) *event.PDU {
			return createEvent(r, `{"room_version":"1"}`)
		}},
		{name: "content not object", want: "create.content", build: func(r *room) *event.PDU {
			return createEvent(r, `[]`)
		}},
		{name: "additional_creators valid", versions: []int{12}, build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":["@bob:b.example","@weird\u0001:x.example:8448"]}`)
		}},
		{name: "additional_creators empty", versions: []int{12}, build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":[]}`)
		}},
		{name: "additional_creators not array", versions: []int{12}, want: "create.additional_creators", build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":"@bob:b.example"}`)
		}},
		{name: "additional_creators number", versions: []int{12}, want: "create.additional_creators", build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":["@bob:b.example",1]}`)
		}},
		{name: "additional_creators bad id", versions: []int{12}, want: "create.additional_creators", build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":["bob"]}`)
		}},
		{name: "additional_creators bad server", versions: []int{12}, want: "create.additional_creators", build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":["@bob:b_example"]}`)
		}},
		{name: "additional_creators ignored before v12", versions: []int{11}, build: func(r *room) *event.PDU {
			return createEvent(r, `{"additional_creators":"nonsense"}`)
		}},
	})
}

func TestCreateEventAndRoomID(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "no create in state", want: "create.missing", build: func(r *room) *event.PDU {
			r.standard()
			delete(r.state, StateKey{TypeCreate, ""})
			return r.ev("m.room.message", alice, nil, `{}`)
		}},
		{name: "v12 room_id not create id", versions: []int{12}, want: "room_id.create", build: func(r *room) *event.PDU {
			r.standard()
			e := r.ev("m.room.message", alice, nil, `{}`)
			e.RoomID = "!other"
			return e
		}},
		{name: "v12 create without event id", versions: []int{12}, want: "room_id.create", build: func(r *room) *event.PDU {
			r.standard()
			r.create.EventID = ""
			e := r.ev("m.room.message", alice, nil, `{}`)
			e.RoomID = "!"
			return e
		}},
		{name: "v12 room_id matches", versions: []int{12}, build: func(r *room) *event.PDU {
			r.standard()
			return r.ev("m.room.message", alice, nil, `{}`)
		}},
	})
}

func TestFederate(t *testing.T) {
	build := func(sender string, fed string) func(r *room) *event.PDU {
		return func(r *room) *event.PDU {
			*r = *newRoom(r.n, fed)
			r.standard().member(carol, MembershipJoin).member(dave, MembershipJoin)
			return r.ev("m.room.message", sender, nil, `{}`)
		}
	}
	runCases(t, []ruleCase{
		{name: "unfederated other server", want: "federate", build: build(carol, `"m.federate":false`)},
		{name: "unfederated same server", build: build(dave, `"m.federate":false`)},
		{name: "escaped key still counts", want: "federate", build: build(carol, `"m\u002efederate":false`)},
		{name: "federate true", build: build(carol, `"m.federate":true`)},
		{name: "federate non-bool is not false", build: build(carol, `"m.federate":"false"`)},
		{name: "default federates", build: build(carol, ``)},
	})
}

func TestAliases(t *testing.T) {
	runCases(t, []ruleCase{
		{name: "v1-5 non-member of matching server", versions: versions(1, 5), build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeAliases, carol, sk("c.example"), `{"aliases":["#x:c.example"]}`)
		}},
		{name: "v1-5 domain mismatch", versions: versions(1, 5), want: "aliases.domain", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeAliases, carol, sk("a.example"), `{}`)
		}},
		{name: "v1-5 no state_key", versions: versions(1, 5), want: "aliases.no_state_key", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeAliases, carol, nil, `{}`)
		}},
		{name: "v6+ ordinary state event", versions: versions(6, 12), want: "sender.not_joined", build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeAliases, carol, sk("c.example"), `{}`)
		}},
		{name: "v6+ joined with power", versions: versions(6, 12), build: func(r *room) *event.PDU {
			r.standard()
			return r.ev(TypeAliases, bob, sk("b.example"), `{}`)
		}},
	})
}
