package event

// RoomVersion describes the rules that differ between Matrix room versions
// (spec: "Room Versions"). Only the properties Conclave acts on are listed;
// each is named after the behaviour it switches, not after the version.
type RoomVersion struct {
	ID string
	// Stable is false for versions the spec marks unstable.
	Stable bool
	// EventIDFormat: 1 = "$opaque:server" (v1, v2); 3 = standard base64 of the
	// reference hash (v3); 4 = URL-safe base64 of the reference hash (v4+).
	EventIDFormat int
	// StateRes: 1 (v1), 2 (v2–v11), 21 for state resolution v2.1 (v12).
	StateRes int
	// EnforceKeyValidity (v5+): signing keys must be valid at origin_server_ts.
	EnforceKeyValidity bool
	// StrictCanonicalJSON (v6+): integers must be in [-(2^53)+1, 2^53-1], no floats.
	StrictCanonicalJSON bool
	// SpecialCaseAliasesAuth (v1–v5): m.room.aliases has its own auth rule.
	SpecialCaseAliasesAuth bool
	// RedactionKeepsAliases (v1–v5): redaction keeps content.aliases of
	// m.room.aliases (v6 removed all special meaning of that event).
	RedactionKeepsAliases bool
	// NotificationsPowerLevels (v6+): "notifications" is checked by auth.
	// It is not protected by redaction in any room version.
	NotificationsPowerLevels bool
	// Knocking (v7+): "knock" join rule and membership.
	Knocking bool
	// RestrictedJoins (v8+): "restricted" join rule with join_authorised_via_users_server;
	// redaction keeps content.allow of m.room.join_rules.
	RestrictedJoins bool
	// RedactionKeepsAuthorisedVia (v9+): redaction keeps join_authorised_via_users_server.
	RedactionKeepsAuthorisedVia bool
	// IntegerPowerLevels (v10+): power level values must be integers, not strings.
	IntegerPowerLevels bool
	// KnockRestricted (v10+): "knock_restricted" join rule.
	KnockRestricted bool
	// V11Redaction (v11+): the redaction algorithm of room version 11
	// (redacts moves into content, create keeps all content, etc.).
	V11Redaction bool
	// RedactsInContent (v11+): m.room.redaction carries "redacts" in content.
	RedactsInContent bool
	// CreatorIsSender (v11+): m.room.create has no "creator"; the sender is the creator.
	CreatorIsSender bool
	// RoomIDFromCreateEvent (v12+): the room ID is "!" + the create event's
	// reference hash; the create event has no room_id and is never an auth event.
	RoomIDFromCreateEvent bool
	// PrivilegedCreators (v12+): the creator and additional_creators have
	// infinite power level and are not listed in m.room.power_levels users.
	PrivilegedCreators bool
}

// DefaultRoomVersion is used by createRoom when the client names none.
// Spec (Client-Server API, "Room versions"): servers SHOULD default to "10";
// Synapse does the same.
const DefaultRoomVersion = "10"

var roomVersions = func() map[string]*RoomVersion {
	m := make(map[string]*RoomVersion)
	for i := 1; i <= 12; i++ {
		v := &RoomVersion{
			ID:                          itoa(i),
			Stable:                      true,
			EventIDFormat:               4,
			StateRes:                    2,
			EnforceKeyValidity:          i >= 5,
			StrictCanonicalJSON:         i >= 6,
			SpecialCaseAliasesAuth:      i <= 5,
			RedactionKeepsAliases:       i <= 5,
			NotificationsPowerLevels:    i >= 6,
			Knocking:                    i >= 7,
			RestrictedJoins:             i >= 8,
			RedactionKeepsAuthorisedVia: i >= 9,
			IntegerPowerLevels:          i >= 10,
			KnockRestricted:             i >= 10,
			V11Redaction:                i >= 11,
			RedactsInContent:            i >= 11,
			CreatorIsSender:             i >= 11,
			RoomIDFromCreateEvent:       i >= 12,
			PrivilegedCreators:          i >= 12,
		}
		switch {
		case i <= 2:
			v.EventIDFormat = 1
		case i == 3:
			v.EventIDFormat = 3
		}
		if i == 1 {
			v.StateRes = 1
		}
		if i == 12 {
			v.StateRes = 21
		}
		m[v.ID] = v
	}
	return m
}()

// GetRoomVersion returns the rules of a known room version.
func GetRoomVersion(id string) (*RoomVersion, bool) {
	v, ok := roomVersions[id]
	return v, ok
}

// KnownRoomVersions lists every version ID whose rules are known (events of
// rooms of these versions can be parsed and checked).
func KnownRoomVersions() []string {
	out := make([]string, 0, len(roomVersions))
	for i := 1; i <= 12; i++ {
		out = append(out, itoa(i))
	}
	return out
}

// Creatable reports whether this server creates (and upgrades to) rooms of
// the version: every known one. Versions 1 and 2 have the historical event
// format ("$opaque:server" event IDs, minted here); version 1 has state
// resolution v1 (stateres). Synapse offers all of them as stable too.
func (v *RoomVersion) Creatable() bool { return v != nil }

// CreatableRoomVersions lists the versions createRoom and room upgrades
// accept, in order: what /capabilities advertises as available.
func CreatableRoomVersions() []string {
	var out []string
	for _, id := range KnownRoomVersions() {
		if roomVersions[id].Creatable() {
			out = append(out, id)
		}
	}
	return out
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return string(rune('0'+i/10)) + string(rune('0'+i%10))
}
