// Package stateres owns Matrix state resolution: given the room states after
// several events (the forward extremities, or the prev_events of a new event)
// it computes the one state that follows them, with the algorithm of the room
// version:
//
//   - v1 for room version 1 (spec: "Room Version 1", "State resolution"):
//     the original algorithm, each conflicted key decided among its own
//     values by depth and SHA-1 of the event ID with auth checks against the
//     state resolved so far (v1.go, which says where it follows Synapse);
//   - v2 for room versions 2 to 11 (spec: "Room Version 2", section "State
//     resolution", shared by versions 2–11);
//   - v2.1 for room version 12 (spec: "Room Version 12", "State resolution"):
//     the same algorithm, except that the iterative auth checks of step 2
//     start from an empty state instead of the unconflicted state, and the
//     full conflicted set also holds the conflicted state subgraph (every
//     event on an auth_events path between two conflicted events).
//
// The package is pure: no I/O, no clock. Events come from a caller-supplied
// Loader; authorisation is delegated to package authrules. Every walk over the
// auth graph is iterative with a visited mark, and the number of events a
// resolution may touch is capped (MaxEvents), so a hostile or corrupted graph
// (cycles, millions of events) yields an error or a bounded result, never a
// hang or a stack overflow.
//
// The package is checked against reference_test.go, a slow, literal
// transcription of the spec written independently of it, on thousands of
// random conflicted DAGs per room version, and against gomatrixserverlib
// (test only) where that follows the spec (oracle_test.go); v1 against
// gomatrixserverlib's v1 and hand-built cases (v1_test.go).
//
// Rejected events (the Loader says so) are never authorised, applied, or used
// as auth events, nor walked through: "no events rejected due to failure to
// auth against their auth chain should appear in the process" (spec, "Rejected
// events"). They are still values of the state sets, so they count when
// separating conflicted from unconflicted state, and an unconflicted one is
// returned as it was given (resolution never invents a removal). Unknown events
// are treated the same way.
//
// Three readings of the spec the implementation makes, all shared with
// Synapse (the reference implementation) and gomatrixserverlib:
//
//   - The full auth chain of a state set, whose union minus intersection is
//     the auth difference, holds the set's own events as well as their auth
//     chains (the spec's text names only the auth chains; Synapse's auth
//     chain difference counts the events too, see authDifference).
//   - From room version 12 the m.room.create event is not listed in
//     auth_events, but "the room_id implies" it (v12 auth rules). The package
//     treats it as an auth event of every other event of the room: it is part
//     of every auth chain and the auth events a v2.1 iterative auth check falls
//     back to.
//   - The iterative auth checks authorise an event with authrules.CheckWith.
//     Signatures were checked when the event was received; for the rules that
//     ask about them (join_authorised_via_users_server, third-party invites)
//     the Loader may implement authrules.Verifier, otherwise events are taken
//     as signed by their authorising server and third-party invite signatures
//     are verified against the public keys of the state being resolved.
package stateres
