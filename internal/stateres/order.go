package stateres

import (
	"math"
	"slices"
	"strings"

	"conclave/internal/authrules"
	"conclave/internal/event"
)

// senderPower returns the power level of the sender of node i "when looking
// at their respective auth_events": the m.room.power_levels and
// m.room.create among its auth events, with the spec's defaults (the
// creator has 100 when there is no power levels event before v12; creators
// are above every level from v12). A power levels event that does not parse
// counts as giving 0.
func (r *resolver) senderPower(i int32) int64 {
	ev := r.nodes[i].ev
	pl := r.authOf(i, authrules.TypePowerLevels, "")
	create := r.authOf(i, authrules.TypeCreate, "")
	var createEv *event.PDU
	if create >= 0 {
		createEv = r.nodes[create].ev
	}
	if pl < 0 {
		p, err := authrules.ParsePowerLevels(r.rv, nil, createEv)
		if err != nil {
			return 0
		}
		return p.UserLevel(ev.Sender)
	}
	// The parsed levels depend on the create event too (creators); an
	// accepted power levels event cites the room's only create event, so
	// the memo is keyed on the power levels event.
	p, ok := r.plMemo[pl]
	if !ok {
		var err error
		p, err = authrules.ParsePowerLevels(r.rv, r.nodes[pl].ev.Content, createEv)
		if err != nil {
			p = nil
		}
		if r.plMemo == nil {
			r.plMemo = make(map[int32]*authrules.PowerLevels)
		}
		r.plMemo[pl] = p
	}
	if p == nil {
		return 0
	}
	return p.UserLevel(ev.Sender)
}

// powerLess is the comparison of the reverse topological power ordering:
// "x < y if x's sender has greater power level than y's sender, when looking
// at their respective auth_events; or the senders have the same power level,
// but x's origin_server_ts is less than y's origin_server_ts; or [both are
// the same], but x's event_id is less than y's event_id".
func (r *resolver) powerLess(a, b int32) bool {
	x, y := &r.nodes[a], &r.nodes[b]
	if x.power != y.power {
		return x.power > y.power
	}
	if tx, ty := x.ev.OriginServerTS, y.ev.OriginServerTS; tx != ty {
		return tx < ty
	}
	return x.id < y.id
}

// powerOrder sorts the events by the reverse topological power ordering:
// Kahn's algorithm over the auth events among them, taking at each step the
// smallest candidate by powerLess. Events left over by a cycle (impossible
// with hashed event IDs) follow, in powerLess order.
func (r *resolver) powerOrder(xs []int32) []int32 {
	if len(xs) == 0 {
		return xs
	}
	// pos maps a node to its index in xs; indeg counts the auth events of
	// each that are in xs; parents lists, per event, the events of xs that
	// cite it, flattened.
	pos := make(map[int32]int32, len(xs))
	for k, i := range xs {
		pos[i] = int32(k)
		r.nodes[i].power = r.senderPower(i)
	}
	indeg := make([]int32, len(xs))
	nParents := make([]int32, len(xs)+1)
	for k, i := range xs {
		for _, a := range r.auth(i) {
			if p, ok := pos[a]; ok {
				indeg[k]++
				nParents[p+1]++
			}
		}
	}
	for k := 1; k < len(nParents); k++ {
		nParents[k] += nParents[k-1]
	}
	parents := make([]int32, nParents[len(xs)])
	fill := slices.Clone(nParents[:len(xs)])
	for k, i := range xs {
		for _, a := range r.auth(i) {
			if p, ok := pos[a]; ok {
				parents[fill[p]] = int32(k)
				fill[p]++
			}
		}
	}
	h := nodeHeap{less: r.powerLess}
	for k, i := range xs {
		if indeg[k] == 0 {
			h.push(i)
		}
	}
	out := make([]int32, 0, len(xs))
	for h.len() > 0 {
		i := h.pop()
		out = append(out, i)
		p := pos[i]
		for _, c := range parents[nParents[p]:nParents[p+1]] {
			indeg[c]--
			if indeg[c] == 0 {
				h.push(xs[c])
			}
		}
	}
	if len(out) < len(xs) {
		var left []int32
		for k, i := range xs {
			if indeg[k] > 0 {
				left = append(left, i)
			}
		}
		slices.SortFunc(left, func(a, b int32) int { return r.cmp(r.powerLess, a, b) })
		out = append(out, left...)
	}
	return out
}

func (r *resolver) cmp(less func(a, b int32) bool, a, b int32) int {
	switch {
	case less(a, b):
		return -1
	case less(b, a):
		return 1
	}
	return 0
}

// infinity is the mainline position of an event whose chain of power levels
// events never meets the mainline.
const infinity = math.MaxInt32

// mainlineOrder sorts the events by the mainline ordering based on the power
// levels event of the partially resolved state (spec, "Mainline ordering"):
// greater mainline position first (events based on older power levels), then
// origin_server_ts, then event ID.
func (r *resolver) mainlineOrder(evs []int32) []int32 {
	if len(evs) == 0 {
		return evs
	}
	// The mainline: P0 the resolved power levels, P(i+1) the power levels
	// event in the auth events of Pi. mainPos of a mainline event is its
	// index; the walk stops at a repeat (a cycle).
	r.newWalk()
	for p, i := r.partial(authrules.StateKey{Type: authrules.TypePowerLevels}), int32(0); p >= 0 && r.nodes[p].usable(); i++ {
		n := &r.nodes[p]
		if n.mark == r.stamp {
			break
		}
		n.mark = r.stamp
		n.mainPos = i
		p = r.authOf(p, authrules.TypePowerLevels, "")
	}
	for _, e := range evs {
		r.nodes[e].power = int64(r.mainlinePosition(e))
	}
	slices.SortFunc(evs, func(a, b int32) int {
		x, y := &r.nodes[a], &r.nodes[b]
		switch {
		case x.power != y.power:
			if x.power > y.power {
				return -1
			}
			return 1
		case x.ev.OriginServerTS != y.ev.OriginServerTS:
			if x.ev.OriginServerTS < y.ev.OriginServerTS {
				return -1
			}
			return 1
		}
		return strings.Compare(x.id, y.id)
	})
	return evs
}

// mainlinePosition returns the mainline position of event e: that of the
// first of e1, e2, … (e(j+1) the power levels event in the auth events of
// ej; e itself excluded) which is on the mainline, infinity if none is. It
// is memoised on the power levels events walked (mainPos of a power levels
// event off the mainline is the position of its own chain, so the memo of a
// node is "its position if on the mainline, else that of its chain"). The
// mainline's own mainPos is set by mainlineOrder before.
func (r *resolver) mainlinePosition(e int32) int32 {
	var path []int32
	p := r.authOf(e, authrules.TypePowerLevels, "")
	walk := r.stamp + 1
	r.stamp = walk
	pos := int32(infinity)
	for p >= 0 {
		n := &r.nodes[p]
		if n.mainPos >= 0 {
			pos = n.mainPos
			break
		}
		if n.mark == walk { // a cycle
			break
		}
		n.mark = walk
		path = append(path, p)
		p = r.authOf(p, authrules.TypePowerLevels, "")
	}
	for _, q := range path {
		r.nodes[q].mainPos = pos
	}
	return pos
}

// nodeHeap is a binary min-heap of nodes under less.
type nodeHeap struct {
	items []int32
	less  func(a, b int32) bool
}

func (h *nodeHeap) len() int { return len(h.items) }

func (h *nodeHeap) push(i int32) {
	h.items = append(h.items, i)
	k := len(h.items) - 1
	for k > 0 {
		p := (k - 1) / 2
		if !h.less(h.items[k], h.items[p]) {
			break
		}
		h.items[k], h.items[p] = h.items[p], h.items[k]
		k = p
	}
}

func (h *nodeHeap) pop() int32 {
	top := h.items[0]
	last := len(h.items) - 1
	h.items[0] = h.items[last]
	h.items = h.items[:last]
	k := 0
	for {
		l, m := 2*k+1, k
		if l < last && h.less(h.items[l], h.items[m]) {
			m = l
		}
		if l+1 < last && h.less(h.items[l+1], h.items[m]) {
			m = l + 1
		}
		if m == k {
			return top
		}
		h.items[k], h.items[m] = h.items[m], h.items[k]
		k = m
	}
}
