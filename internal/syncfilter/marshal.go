package syncfilter

import "encoding/json"

// MarshalJSON encodes the filter in its spec shape; Parse of the result
// gives an equal filter. Absent lists stay absent and empty lists stay [].
func (f *Filter) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	putList(m, "event_fields", f.EventFields)
	if f.EventFormat != "" {
		m["event_format"] = f.EventFormat
	}
	if f.Presence != nil {
		m["presence"] = f.Presence.fields(map[string]any{})
	}
	if f.AccountData != nil {
		m["account_data"] = f.AccountData.fields(map[string]any{})
	}
	if r := f.Room; r != nil {
		rm := map[string]any{}
		putList(rm, "rooms", r.Rooms)
		putList(rm, "not_rooms", r.NotRooms)
		if r.IncludeLeave {
			rm["include_leave"] = true
		}
		for k, sub := range map[string]*RoomEventFilter{"timeline": r.Timeline, "state": r.State, "ephemeral": r.Ephemeral, "account_data": r.AccountData} {
			if sub != nil {
				rm[k] = sub.fields()
			}
		}
		m["room"] = rm
	}
	return json.Marshal(m)
}

// MarshalJSON encodes the filter in its spec shape.
func (f *RoomEventFilter) MarshalJSON() ([]byte, error) { return json.Marshal(f.fields()) }

func (f *RoomEventFilter) fields() map[string]any {
	m := f.EventFilter.fields(map[string]any{})
	putList(m, "rooms", f.Rooms)
	putList(m, "not_rooms", f.NotRooms)
	if f.ContainsURL != nil {
		m["contains_url"] = *f.ContainsURL
	}
	if f.LazyLoadMembers {
		m["lazy_load_members"] = true
	}
	if f.IncludeRedundantMembers {
		m["include_redundant_members"] = true
	}
	if f.UnreadThreadNotifications {
		m["unread_thread_notifications"] = true
	}
	return m
}

func (f *EventFilter) fields(m map[string]any) map[string]any {
	if f.Limit != nil {
		m["limit"] = *f.Limit
	}
	putList(m, "types", f.Types)
	putList(m, "not_types", f.NotTypes)
	putList(m, "senders", f.Senders)
	putList(m, "not_senders", f.NotSenders)
	return m
}

func putList(m map[string]any, key string, list []string) {
	if list != nil {
		m[key] = list
	}
}
