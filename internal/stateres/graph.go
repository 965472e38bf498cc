package stateres

import (
	"conclave/internal/authrules"
	"conclave/internal/event"
)

// node is one event known to a resolution. Nodes live in resolver.nodes and
// refer to each other by index, so the graph costs a few slices, not a
// pointer per edge.
type node struct {
	id string
	ev *event.PDU // nil when the event is unknown or rejected: absent for resolution
	// auth events, as indexes into resolver.edges, once loaded (edgesOK).
	edgeStart, edgeEnd int32
	edgesOK            bool

	mark     uint32 // visited stamp of the current walk (resolver.stamp)
	lastSet  int32  // the state set whose auth chain last reached this node, +1
	inSets   int32  // how many state sets' full auth chains contain the node
	inAll    bool   // in the auth chain of an unconflicted event: in every chain
	inFull   bool   // in the full conflicted set
	inPower  bool   // selected in step 1
	conflict bool   // a value of a conflicted state key
	reachC   int8   // v2.1: 0 unknown, 1 an auth chain reaches a conflicted event, 2 not
	power    int64  // the sender's power level per its auth events (step 1 ordering)
	mainPos  int32  // mainline position memo, -1 unknown (step 3)
}

// usable reports whether the node is an accepted, known event.
func (n *node) usable() bool { return n.ev != nil }

// get returns the node of an event ID, loading it on first use. It returns
// -1 when the cap on events is reached (r.err is then set).
func (r *resolver) get(id string) int32 {
	if i, ok := r.index[id]; ok {
		return i
	}
	if len(r.nodes) >= r.maxEvents {
		r.err = ErrTooManyEvents
		return -1
	}
	i := int32(len(r.nodes))
	n := node{id: id, mainPos: -1}
	if ev, rejected, ok := r.load.Event(id); ok && !rejected && ev != nil {
		n.ev = ev
	}
	r.nodes = append(r.nodes, n)
	r.index[id] = i
	return i
}

// auth returns the usable auth events of node i (loading them), without
// duplicates. From room version 12 the m.room.create event named by the room
// ID is one of them (see the package comment). An unknown or rejected node
// has none: nothing is walked through it.
func (r *resolver) auth(i int32) []int32 {
	n := &r.nodes[i]
	if n.edgesOK {
		return r.edges[n.edgeStart:n.edgeEnd]
	}
	ev := n.ev
	if ev == nil {
		n.edgesOK = true
		return nil
	}
	start := int32(len(r.edges))
	add := func(id string) bool {
		j := r.get(id)
		if j < 0 {
			return false
		}
		if !r.nodes[j].usable() || j == i {
			return true
		}
		for _, e := range r.edges[start:] {
			if e == j {
				return true
			}
		}
		r.edges = append(r.edges, j)
		return true
	}
	if r.rv.RoomIDFromCreateEvent && !(ev.Type == authrules.TypeCreate && ev.StateKeyIs("")) &&
		len(ev.RoomID) > 1 && ev.RoomID[0] == '!' {
		// One room, one create event: build its ID once.
		if ev.RoomID != r.createRoom {
			r.createRoom, r.createID = ev.RoomID, "$"+ev.RoomID[1:]
		}
		if !add(r.createID) {
			return nil
		}
	}
	for _, id := range ev.AuthEvents {
		if !add(id) {
			return nil
		}
	}
	// r.nodes may have grown: re-take the pointer.
	n = &r.nodes[i]
	n.edgeStart, n.edgeEnd, n.edgesOK = start, int32(len(r.edges)), true
	return r.edges[start:n.edgeEnd]
}

// authOf returns the first usable auth event of node i with the given key,
// or -1.
func (r *resolver) authOf(i int32, typ, stateKey string) int32 {
	for _, a := range r.auth(i) {
		if ev := r.nodes[a].ev; ev.Type == typ && ev.StateKeyIs(stateKey) {
			return a
		}
	}
	return -1
}

// walk visits, depth first and without recursion, every node in the auth
// chains of the start nodes (not the start nodes themselves, unless one is
// in the chain of another). visit is called once per node reached and
// returns whether to continue below it. Nodes already marked with the
// current stamp are not visited again: call r.newWalk() first.
func (r *resolver) walk(starts []int32, visit func(i int32) bool) {
	stack := r.stack[:0]
	for _, s := range starts {
		stack = append(stack, r.auth(s)...)
		for len(stack) > 0 && r.err == nil {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			n := &r.nodes[i]
			if n.mark == r.stamp {
				continue
			}
			n.mark = r.stamp
			if visit(i) {
				stack = append(stack, r.auth(i)...)
			}
		}
	}
	r.stack = stack[:0]
}

func (r *resolver) newWalk() { r.stamp++ }

// authDifference marks the nodes in the auth difference: in the full auth
// chain of some state sets but not of all (spec, "Auth difference"). The
// full auth chain of set i is the union of the auth chains of its events,
// and its events themselves: the spec's text says only "the union of the
// auth chains for each event in S_i", but Synapse, the reference
// implementation, counts every event of S_i as in the full auth chain of S_i
// (synapse/storage/databases/main/event_federation.py, both
// _get_auth_chain_difference_using_cover_index_txn and
// _get_auth_chain_difference_txn start from the state sets' events), and so
// does gomatrixserverlib in effect (it drops unconflicted events from the
// full conflicted set). The difference is an unconflicted event that is in
// the auth chain of one side's events only, e.g. a member's join cited by
// a kick on one branch: it is not in the auth difference, so is not
// re-checked, and with servers that differ here a room's state diverges.
// So: the unconflicted events and their auth chains, which every set
// shares, are walked once (inAll); each set's own walk starts from its
// conflicted values and stops where the shared part begins, because an auth
// chain is closed downwards. (A conflicted value is in the full conflicted
// set anyway.)
func (r *resolver) authDifference(sets []StateMap) []int32 {
	r.newWalk()
	for _, i := range r.unconflictedNodes {
		r.nodes[i].inAll = true
	}
	r.walk(r.unconflictedNodes, func(i int32) bool {
		r.nodes[i].inAll = true
		return true
	})
	var diff []int32
	var starts []int32
	for si, s := range sets {
		starts = starts[:0]
		for k := range r.conflictedKeys {
			if id, ok := s[k]; ok {
				if j := r.get(id); j >= 0 {
					starts = append(starts, j)
				}
			}
		}
		r.newWalk()
		r.walk(starts, func(i int32) bool {
			n := &r.nodes[i]
			if n.inAll {
				return false
			}
			if n.lastSet != int32(si)+1 {
				n.lastSet = int32(si) + 1
				if n.inSets == 0 {
					diff = append(diff, i)
				}
				n.inSets++
			}
			return true
		})
	}
	out := diff[:0]
	for _, i := range diff {
		if int(r.nodes[i].inSets) < len(sets) {
			out = append(out, i)
		}
	}
	return out
}

// conflictedSubgraph returns, for v2.1, the events on auth_events paths
// between two conflicted events (spec v12, "Conflicted state subgraph"):
// the events in the auth chain of a conflicted event whose own auth chain
// holds a conflicted event. (The conflicted events themselves are already in
// the full conflicted set.)
func (r *resolver) conflictedSubgraph() []int32 {
	var below []int32
	r.newWalk()
	r.walk(r.conflictedNodes, func(i int32) bool {
		below = append(below, i)
		return true
	})
	// reachC by an iterative post-order over the nodes below the conflicted
	// events: a node reaches a conflicted event if one of its auth events is
	// conflicted or reaches one. A node met again while still on the stack
	// (a cycle, impossible with hashed event IDs) counts as not reaching.
	type frame struct {
		i    int32
		next int
	}
	var stack []frame
	var out []int32
	for _, root := range below {
		if r.nodes[root].reachC != 0 {
			continue
		}
		stack = append(stack[:0], frame{i: root})
		r.nodes[root].reachC = 3 // on the stack
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			edges := r.auth(f.i)
			if f.next < len(edges) {
				a := edges[f.next]
				f.next++
				if r.nodes[a].reachC == 0 {
					r.nodes[a].reachC = 3
					stack = append(stack, frame{i: a})
				}
				continue
			}
			res := int8(2)
			for _, a := range edges {
				if an := &r.nodes[a]; an.conflict || an.reachC == 1 {
					res = 1
					break
				}
			}
			r.nodes[f.i].reachC = res
			stack = stack[:len(stack)-1]
		}
	}
	for _, i := range below {
		if r.nodes[i].reachC == 1 {
			out = append(out, i)
		}
	}
	return out
}
