package fedclient

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"conclave/internal/outbound"
)

// Each typed call hits its endpoint with its method, signed, and decodes
// the spec's answer shape.
func TestTypedCalls(t *testing.T) {
	e := newEnv(t)
	answers := map[string]string{
		"/_matrix/key/v2/server":                     `{"server_name":"x"}`,
		"/_matrix/key/v2/query":                      `{"server_keys":[{"server_name":"c.test"}]}`,
		"/_matrix/federation/v1/send/":               `{"pdus":{"$a":{}}}`,
		"/_matrix/federation/v1/make_join/":          `{"room_version":"11","event":{"type":"m.room.member"}}`,
		"/_matrix/federation/v2/send_join/":          `{"origin":"b.test","auth_chain":[{}],"state":[{},{}],"event":{"a":1},"members_omitted":true,"servers_in_room":["b.test"]}`,
		"/_matrix/federation/v1/make_leave/":         `{"room_version":"10","event":{}}`,
		"/_matrix/federation/v2/send_leave/":         `{}`,
		"/_matrix/federation/v2/invite/":             `{"event":{"signed":true}}`,
		"/_matrix/federation/v1/make_knock/":         `{"room_version":"7","event":{}}`,
		"/_matrix/federation/v1/send_knock/":         `{"knock_room_state":[{"type":"m.room.name"}]}`,
		"/_matrix/federation/v1/event/":              `{"origin":"b.test","origin_server_ts":5,"pdus":[{"e":1}]}`,
		"/_matrix/federation/v1/state_ids/":          `{"auth_chain_ids":["$a"],"pdu_ids":["$b","$c"]}`,
		"/_matrix/federation/v1/state/":              `{"auth_chain":[{}],"pdus":[{},{},{}]}`,
		"/_matrix/federation/v1/event_auth/":         `{"auth_chain":[{},{}]}`,
		"/_matrix/federation/v1/backfill/":           `{"origin":"b.test","origin_server_ts":1,"pdus":[{}]}`,
		"/_matrix/federation/v1/get_missing_events/": `{"events":[{},{}]}`,
		"/_matrix/federation/v1/query/directory":     `{"room_id":"!r:b.test","servers":["b.test"]}`,
		"/_matrix/federation/v1/query/profile":       `{"displayname":"Bob"}`,
	}
	e.other.handler = func(w http.ResponseWriter, r *http.Request) {
		for prefix, a := range answers {
			if strings.HasPrefix(r.URL.Path, prefix) {
				w.Write([]byte(a))
				return
			}
		}
		w.WriteHeader(404)
		w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"no"}`))
	}
	c := e.client()
	defer c.CloseIdleConnections()
	ctx := context.Background()
	dest := "b.test:" + port(e.other.port)
	room, ev, user := "!room:b.test", "$ev/ent+x=", "@alice:origin.test"
	qRoom, qEv, qUser := url.PathEscape(room), url.PathEscape(ev), url.PathEscape(user)
	check := func(call, method, uri string, signed bool) {
		t.Helper()
		r := e.other.last(t)
		if r.Method != method || r.URI != uri {
			t.Errorf("%s: %s %s, want %s %s", call, r.Method, r.URI, method, uri)
		}
		if signed {
			checkSigned(t, r, e.key, "origin.test", dest)
		} else if r.Auth != "" {
			t.Errorf("%s: signed", call)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	keys, err := c.GetServerKeys(ctx, dest)
	must(err)
	check("keys", "GET", "/_matrix/key/v2/server", false)
	if string(keys) != `{"server_name":"x"}` {
		t.Errorf("keys %s", keys)
	}
	nk, err := c.QueryServerKeys(ctx, dest, "c.test:8448", "ed25519:k", 1234)
	must(err)
	check("notary", "POST", "/_matrix/key/v2/query", false)
	if string(nk) != `{"server_keys":[{"server_name":"c.test"}]}` || string(e.other.last(t).Body) != `{"server_keys":{"c.test:8448":{"ed25519:k":{"minimum_valid_until_ts":1234}}}}` {
		t.Errorf("notary: %s for %s", nk, e.other.last(t).Body)
	}
	txn, err := c.SendTransaction(ctx, dest, "t 1", []byte(`{"origin":"origin.test","origin_server_ts":1,"pdus":[],"edus":[]}`))
	must(err)
	check("send", "PUT", "/_matrix/federation/v1/send/t%201", true)
	if !strings.Contains(string(txn), `"$a"`) || !strings.Contains(string(e.other.last(t).Body), `"edus":[]`) {
		t.Errorf("send: %s", txn)
	}
	mj, err := c.MakeJoin(ctx, dest, room, user, []string{"10", "11"})
	must(err)
	check("make_join", "GET", "/_matrix/federation/v1/make_join/"+qRoom+"/"+qUser+"?ver=10&ver=11", true)
	if mj.RoomVersion != "11" || !strings.Contains(string(mj.Event), "m.room.member") {
		t.Errorf("make_join %+v", mj)
	}
	sj, err := c.SendJoinV2(ctx, dest, room, ev, json.RawMessage(`{"type":"m.room.member"}`), true)
	must(err)
	check("send_join", "PUT", "/_matrix/federation/v2/send_join/"+qRoom+"/"+qEv+"?omit_members=true", true)
	if sj.Origin != "b.test" || len(sj.AuthChain) != 1 || len(sj.State) != 2 || !sj.MembersOmitted || sj.ServersInRoom[0] != "b.test" {
		t.Errorf("send_join %+v", sj)
	}
	ml, err := c.MakeLeave(ctx, dest, room, user)
	must(err)
	check("make_leave", "GET", "/_matrix/federation/v1/make_leave/"+qRoom+"/"+qUser, true)
	if ml.RoomVersion != "10" {
		t.Errorf("make_leave %+v", ml)
	}
	must(c.SendLeaveV2(ctx, dest, room, ev, json.RawMessage(`{}`)))
	check("send_leave", "PUT", "/_matrix/federation/v2/send_leave/"+qRoom+"/"+qEv, true)
	inv, err := c.InviteV2(ctx, dest, room, ev, InviteRequest{RoomVersion: "11", Event: json.RawMessage(`{"a":1}`), InviteRoomState: []json.RawMessage{json.RawMessage(`{}`)}})
	must(err)
	check("invite", "PUT", "/_matrix/federation/v2/invite/"+qRoom+"/"+qEv, true)
	if string(inv) != `{"signed":true}` || !strings.Contains(string(e.other.last(t).Body), `"room_version":"11"`) {
		t.Errorf("invite %s", inv)
	}
	mk, err := c.MakeKnock(ctx, dest, room, user, []string{"7"})
	must(err)
	check("make_knock", "GET", "/_matrix/federation/v1/make_knock/"+qRoom+"/"+qUser+"?ver=7", true)
	if mk.RoomVersion != "7" {
		t.Errorf("make_knock %+v", mk)
	}
	ks, err := c.SendKnock(ctx, dest, room, ev, json.RawMessage(`{}`))
	must(err)
	check("send_knock", "PUT", "/_matrix/federation/v1/send_knock/"+qRoom+"/"+qEv, true)
	if len(ks) != 1 {
		t.Errorf("send_knock %s", ks)
	}
	ge, err := c.GetEvent(ctx, dest, ev)
	must(err)
	check("event", "GET", "/_matrix/federation/v1/event/"+qEv, true)
	if ge.Origin != "b.test" || ge.OriginServerTS != 5 || len(ge.PDUs) != 1 {
		t.Errorf("event %+v", ge)
	}
	si, err := c.GetStateIDs(ctx, dest, room, ev)
	must(err)
	check("state_ids", "GET", "/_matrix/federation/v1/state_ids/"+qRoom+"?event_id="+url.QueryEscape(ev), true)
	if len(si.AuthChainIDs) != 1 || len(si.PDUIDs) != 2 {
		t.Errorf("state_ids %+v", si)
	}
	st, err := c.GetState(ctx, dest, room, ev)
	must(err)
	check("state", "GET", "/_matrix/federation/v1/state/"+qRoom+"?event_id="+url.QueryEscape(ev), true)
	if len(st.AuthChain) != 1 || len(st.PDUs) != 3 {
		t.Errorf("state %+v", st)
	}
	ea, err := c.GetEventAuth(ctx, dest, room, ev)
	must(err)
	check("event_auth", "GET", "/_matrix/federation/v1/event_auth/"+qRoom+"/"+qEv, true)
	if len(ea) != 2 {
		t.Errorf("event_auth %s", ea)
	}
	bf, err := c.Backfill(ctx, dest, room, []string{"$a", "$b"}, 20)
	must(err)
	check("backfill", "GET", "/_matrix/federation/v1/backfill/"+qRoom+"?limit=20&v=%24a&v=%24b", true)
	if len(bf.PDUs) != 1 {
		t.Errorf("backfill %+v", bf)
	}
	me, err := c.GetMissingEvents(ctx, dest, room, MissingEventsRequest{LatestEvents: []string{"$z"}, Limit: 10})
	must(err)
	check("get_missing_events", "POST", "/_matrix/federation/v1/get_missing_events/"+qRoom, true)
	if len(me) != 2 || string(e.other.last(t).Body) != `{"earliest_events":[],"latest_events":["$z"],"limit":10}` {
		t.Errorf("get_missing_events %s, sent %s", me, e.other.last(t).Body)
	}
	dir, err := c.QueryDirectory(ctx, dest, "#room:b.test")
	must(err)
	check("directory", "GET", "/_matrix/federation/v1/query/directory?room_alias=%23room%3Ab.test", true)
	if dir.RoomID != "!r:b.test" || dir.Servers[0] != "b.test" {
		t.Errorf("directory %+v", dir)
	}
	prof, err := c.QueryProfile(ctx, dest, user, "displayname")
	must(err)
	check("profile", "GET", "/_matrix/federation/v1/query/profile?field=displayname&user_id=%40alice%3Aorigin.test", true)
	if string(prof) != `{"displayname":"Bob"}` {
		t.Errorf("profile %s", prof)
	}
	// One connection served every call.
	if n := e.other.accepts.Load(); n != 1 {
		t.Errorf("%d connections for one destination", n)
	}
}

// A non-200 answer is an *Error with the remote's status and errcode;
// answers past the body limit fail rather than being cut.
func TestErrorsAndLimits(t *testing.T) {
	e := newEnv(t)
	e.other.handler = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_matrix/federation/v1/event/$missing":
			w.WriteHeader(404)
			w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"no such event"}`))
		case "/_matrix/federation/v1/event/$html":
			w.WriteHeader(502)
			w.Write([]byte(`<html>bad gateway</html>`))
		case "/_matrix/federation/v1/event/$huge":
			w.Write([]byte(`{"pdus":["`))
			w.Write([]byte(strings.Repeat("x", DefaultMaxBody)))
			w.Write([]byte(`"]}`))
		case "/_matrix/key/v2/query":
			w.Write([]byte(`{"server_keys":["`))
			w.Write([]byte(strings.Repeat("x", MaxKeyQueryBody)))
			w.Write([]byte(`"]}`))
		case "/_matrix/federation/v1/event/$redirect":
			http.Redirect(w, r, "/_matrix/federation/v1/event/$missing", http.StatusFound)
		}
	}
	c := e.client()
	defer c.CloseIdleConnections()
	dest := "b.test:" + port(e.other.port)
	_, err := c.GetEvent(context.Background(), dest, "$missing")
	var fe *Error
	if !errors.As(err, &fe) || fe.Status != 404 || fe.Errcode != "M_NOT_FOUND" || fe.Message != "no such event" || fe.Destination != dest {
		t.Fatalf("404: %#v", err)
	}
	_, err = c.GetEvent(context.Background(), dest, "$html")
	if !errors.As(err, &fe) || fe.Status != 502 || fe.Errcode != "" || string(fe.Body) != "<html>bad gateway</html>" {
		t.Fatalf("502: %#v", err)
	}
	if _, err = c.GetEvent(context.Background(), dest, "$huge"); !errors.Is(err, outbound.ErrTooLarge) {
		t.Fatalf("huge: %v", err)
	}
	// A notary's answer is bounded tighter than the default.
	if _, err = c.QueryServerKeys(context.Background(), dest, "c.test", "ed25519:k", 1); !errors.Is(err, outbound.ErrTooLarge) {
		t.Fatalf("huge notary answer: %v", err)
	}
	_, err = c.GetEvent(context.Background(), dest, "$redirect")
	if !errors.As(err, &fe) || fe.Status != http.StatusFound {
		t.Fatalf("redirect followed: %v", err)
	}
	if err := c.Do(context.Background(), "GET", dest, "/not/matrix", nil, nil, nil); err == nil {
		t.Fatal("path outside /_matrix accepted")
	}
	if err := c.Do(context.Background(), "GET", "bad name", "/_matrix/x", nil, nil, nil); err == nil {
		t.Fatal("invalid destination accepted")
	}
}
