package authrules

// Error reports which authorisation rule rejected an event.
//
// Rule is a stable dotted name such as "member.join.banned" rather than the
// spec's rule number, because the numbering shifts between room versions
// (m.room.member is rule 4 in v1–v5 and v6–v11's numbering differs again
// from v12's). Reason is a human-readable explanation.
type Error struct {
	Rule   string
	Reason string
}

func (e *Error) Error() string { return "authrules: " + e.Rule + ": " + e.Reason }

func reject(rule, reason string) error { return &Error{Rule: rule, Reason: reason} }
