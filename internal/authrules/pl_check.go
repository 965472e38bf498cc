package authrules

import (
	"conclave/internal/event"
)

// checkPowerLevels implements the m.room.power_levels rule for a new power
// levels event that has passed the generic checks. senderLevel is the
// sender's current level.
func checkPowerLevels(rv *event.RoomVersion, ev *event.PDU, state StateGetter, create *event.PDU, ls *levelSource, senderLevel int64) error {
	// Validity (v10: integers only; all versions: users is an object of
	// valid user IDs to integers).
	next, err := ParsePowerLevels(rv, ev.Content, create)
	if err != nil {
		return err
	}
	if rv.PrivilegedCreators {
		// v12 rule 10.4: creators cannot be listed in users.
		for _, c := range creators(rv, create) {
			if _, listed := next.users[c]; listed {
				return reject("power_levels.creator_listed", "users lists room creator "+quote(c))
			}
		}
	}
	// "If there is no previous m.room.power_levels event in the room, allow."
	old := ls.pl
	if old == nil {
		prev := state.StateEvent(TypePowerLevels, "")
		if prev == nil {
			return nil
		}
		if old, err = ParsePowerLevels(rv, prev.Content, create); err != nil {
			return errCurrentPL(err.Error())
		}
	} else if old.noEvent {
		return nil
	}

	// Top-level properties: for each one added, changed or removed, neither
	// the current nor the new value may exceed the sender's level.
	for i := range numNamed {
		changed := old.present[i] != next.present[i] || (old.present[i] && old.named[i] != next.named[i])
		if !changed {
			continue
		}
		if old.present[i] && old.named[i] > senderLevel {
			return reject("power_levels.named_current", namedKeys[i]+": current value is above the sender's level")
		}
		if next.present[i] && next.named[i] > senderLevel {
			return reject("power_levels.named_new", namedKeys[i]+": new value is above the sender's level")
		}
	}
	if err := checkLevelMapChange("events", old.events, next.events, senderLevel); err != nil {
		return err
	}
	if rv.NotificationsPowerLevels {
		// v6+: notifications is checked like events.
		if err := checkLevelMapChange("notifications", old.notifs, next.notifs, senderLevel); err != nil {
			return err
		}
	}
	// "For each entry being changed in, or removed from, the users
	// property, other than the sender's own entry: If the current value is
	// greater than or equal to the sender's current power level, reject."
	for u, ov := range old.users {
		if u == ev.Sender {
			continue
		}
		if nv, ok := next.users[u]; ok && nv == ov {
			continue
		}
		if ov >= senderLevel {
			return reject("power_levels.users_current", "cannot change the level of "+quote(u)+", who is not below the sender")
		}
	}
	// "For each entry being added to, or changed in, the users property: If
	// the new value is greater than the sender's current power level, reject."
	for u, nv := range next.users {
		if ov, ok := old.users[u]; ok && ov == nv {
			continue
		}
		if nv > senderLevel {
			return reject("power_levels.users_new", "cannot raise "+quote(u)+" above the sender's level")
		}
	}
	return nil
}

// checkLevelMapChange applies the events/notifications part of the rule:
// changed or removed entries must not currently exceed the sender's level,
// added or changed entries must not newly exceed it.
func checkLevelMapChange(name string, old, next map[string]int64, senderLevel int64) error {
	for k, ov := range old {
		if nv, ok := next[k]; ok && nv == ov {
			continue
		}
		if ov > senderLevel {
			return reject("power_levels."+name+"_current", name+" entry "+quote(k)+": current value is above the sender's level")
		}
	}
	for k, nv := range next {
		if ov, ok := old[k]; ok && ov == nv {
			continue
		}
		if nv > senderLevel {
			return reject("power_levels."+name+"_new", name+" entry "+quote(k)+": new value is above the sender's level")
		}
	}
	return nil
}
