package authrules

import (
	"conclave/internal/event"
)

// levelSource answers the power level questions Check asks. It uses a
// pre-parsed *PowerLevels when the caller has one (PowerLevelsCache) and
// otherwise reads single values straight out of the power levels content,
// which keeps the common checks free of map building and allocation. The two
// paths must agree; TestLevelSourceAgreesWithParse holds them to it.
type levelSource struct {
	pl      *PowerLevels // if set, everything below is unused
	rv      *event.RoomVersion
	create  *event.PDU
	content []byte // nil: the room has no m.room.power_levels event

	// The top level of content is indexed on first use, in one pass:
	// top[i] is the raw value of topKeys[i] or nil.
	indexed bool
	top     [numTop][]byte
}

// topKeys are the named keys followed by the three maps.
var topKeys = append(namedKeys[:len(namedKeys):len(namedKeys)], "users", "events")

const (
	topUsers = numNamed + iota
	topEvents
	numTop
)

// index returns the raw value of topKeys[i], or nil if absent.
func (s *levelSource) index(i int) ([]byte, error) {
	if !s.indexed {
		if err := lookupAll(s.content, topKeys, s.top[:]); err != nil {
			return nil, errCurrentPL("content is not an object")
		}
		s.indexed = true
	}
	return s.top[i], nil
}

func newLevelSource(rv *event.RoomVersion, state StateGetter, create *event.PDU) levelSource {
	if c, ok := state.(PowerLevelsCache); ok {
		if pl := c.CachedPowerLevels(); pl != nil {
			return levelSource{pl: pl}
		}
	}
	ls := levelSource{rv: rv, create: create}
	if ev := state.StateEvent(TypePowerLevels, ""); ev != nil {
		ls.content = ev.Content
		if ls.content == nil {
			ls.content = []byte("{}")
		}
	}
	return ls
}

func (s *levelSource) value(raw []byte) (int64, levelKind) {
	return parseLevel(s.rv.StrictCanonicalJSON, s.rv.IntegerPowerLevels, raw)
}

func errCurrentPL(why string) error {
	return reject("power_levels.current", "current m.room.power_levels is invalid: "+why)
}

// named returns one of the top-level properties, with its default.
func (s *levelSource) named(i int) (int64, error) {
	if s.pl != nil {
		return s.pl.named[i], nil
	}
	if s.content == nil {
		return namedDefaults[i], nil
	}
	raw, err := s.index(i)
	if err != nil {
		return 0, err
	}
	if raw == nil {
		return namedDefaults[i], nil
	}
	switch v, kind := s.value(raw); kind {
	case levelOK:
		return v, nil
	case levelInvalid:
		if !s.rv.IntegerPowerLevels {
			return namedDefaults[i], nil
		}
	}
	return 0, errCurrentPL(namedKeys[i] + " is not an integer")
}

// userLevel mirrors PowerLevels.UserLevel.
func (s *levelSource) userLevel(userID string) (int64, error) {
	if s.pl != nil {
		return s.pl.UserLevel(userID), nil
	}
	if s.rv.PrivilegedCreators && isCreator(s.rv, s.create, userID) {
		return CreatorLevel, nil
	}
	if s.content == nil {
		if !s.rv.PrivilegedCreators && isCreator(s.rv, s.create, userID) {
			return noEventCreatorLevel, nil
		}
		return 0, nil
	}
	users, err := s.index(topUsers)
	if err != nil {
		return 0, err
	}
	if users != nil {
		raw, found, err := lookup(users, userID)
		if err != nil {
			return 0, errCurrentPL("users is not an object")
		}
		if found {
			v, kind := s.value(raw)
			if kind != levelOK {
				return 0, errCurrentPL("users value is not an integer")
			}
			return v, nil
		}
	}
	return s.named(keyUsersDefault)
}

// eventLevel mirrors PowerLevels.EventLevel.
func (s *levelSource) eventLevel(eventType string, isState bool) (int64, error) {
	if s.pl != nil {
		return s.pl.EventLevel(eventType, isState), nil
	}
	if s.content != nil {
		events, err := s.index(topEvents)
		if err != nil {
			return 0, err
		}
		found := events != nil
		if found && isObject(events) {
			raw, found, err := lookup(events, eventType)
			if err != nil {
				return 0, errCurrentPL("events is not an object")
			}
			if found {
				switch v, kind := s.value(raw); kind {
				case levelOK:
					return v, nil
				case levelFatal:
					return 0, errCurrentPL("events value out of range")
				}
				if s.rv.IntegerPowerLevels {
					return 0, errCurrentPL("events value is not an integer")
				}
			}
		} else if found && s.rv.IntegerPowerLevels {
			return 0, errCurrentPL("events is not an object")
		}
	}
	if isState {
		return s.named(keyStateDefault)
	}
	return s.named(keyEventsDefault)
}
