// Package authrules owns the Matrix authorisation rules: the pure decision
// whether an event is allowed given the state it is authorised against, for
// room versions 1 to 12 (spec: "Room Versions", section "Authorisation rules"
// of each version, and Server-Server API "Auth events selection").
//
// It also owns the parsing of the state that drives those rules:
// m.room.power_levels (with the spec's defaults, stringy/floaty values before
// room version 10 and the privileged creators of room version 12),
// m.room.create (creators, m.federate), m.room.member and m.room.join_rules.
//
// The package is pure: no I/O, no clock, no database. Work that needs keys or
// canonical JSON (checking that an event is signed by a given server, and
// verifying the "signed" block of a third-party invite) is delegated to a
// caller-supplied Verifier. Everything else in the rules is decided here.
//
// What is deliberately NOT here:
//   - Signature and hash checks of the event itself ("Checks performed on
//     receipt of a PDU", steps 1–2), which belong to package event.
//   - The rejected-auth-event rule ("entries which were themselves rejected"):
//     callers pass only accepted events and must reject an event outright if
//     one of its auth events was rejected.
//   - Whether a redaction should be *applied*. From room version 3 the auth
//     rules accept m.room.redaction like any other event; the redact-level /
//     same-sender-domain test happens when serving ("Handling redactions"),
//     using PowerLevels.Redact and the helpers here.
package authrules
