package push

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"
)

// Env is what evaluating rules for one user and one event needs beyond the
// event itself.
type Env struct {
	UserID      string
	DisplayName string // the user's display name in the room ("" if none)
	MemberCount int    // joined members of the room
	// SenderPower is the sender's power level; NotificationPower returns the
	// level a notification key (e.g. "room") needs: from the power levels'
	// "notifications" object, 50 when unset.
	SenderPower       int64
	NotificationPower func(key string) int64
}

// Result is what the first matching rule asks for.
type Result struct {
	RuleID    string
	Notify    bool
	Highlight bool
	Sound     string
	Actions   []json.RawMessage // the rule's actions as stored
	Rule      *Rule             // the rule that matched (nil: none)
}

// Event is an event parsed once, to evaluate many users' rules against it.
type Event struct {
	m         map[string]any
	bodyLower string // content.body in lower case ("" if none)
	hasBody   bool
}

// ParseEvent parses an event (client or federation format JSON); nil if it
// is not a JSON object.
func ParseEvent(eventJSON []byte) *Event {
	m := parseEvent(eventJSON)
	if m == nil {
		return nil
	}
	ev := &Event{m: m}
	if b, ok := lookupString(m, "content.body"); ok {
		ev.bodyLower, ev.hasBody = strings.ToLower(b), true
	}
	return ev
}

// Evaluate runs rs against the event (client or federation format JSON) and
// returns the actions of the first enabled rule that matches, in kind
// order. No match means no notification.
func Evaluate(rs *Ruleset, eventJSON []byte, env *Env) Result {
	ev := ParseEvent(eventJSON)
	if ev == nil {
		return Result{}
	}
	return EvaluateEvent(rs, ev, env)
}

// EvaluateEvent is Evaluate on an event parsed once.
func EvaluateEvent(rs *Ruleset, ev *Event, env *Env) Result {
	for _, k := range Kinds {
		for _, r := range *rs.List(k) {
			if r == nil || !r.Enabled || !ruleMatches(k, r, ev, env) {
				continue
			}
			return actionsResult(r)
		}
	}
	return Result{}
}

func actionsResult(r *Rule) Result {
	res := Result{RuleID: r.RuleID, Actions: r.Actions, Rule: r}
	for _, a := range r.Actions {
		var s string
		if json.Unmarshal(a, &s) == nil {
			if s == "notify" {
				res.Notify = true
			}
			continue
		}
		var t struct {
			SetTweak string          `json:"set_tweak"`
			Value    json.RawMessage `json:"value"`
		}
		if json.Unmarshal(a, &t) != nil {
			continue
		}
		switch t.SetTweak {
		case "highlight":
			// The value defaults to true when absent.
			res.Highlight = len(t.Value) == 0 || bytes.Equal(t.Value, []byte("true"))
		case "sound":
			json.Unmarshal(t.Value, &res.Sound)
		}
	}
	return res
}

func ruleMatches(kind string, r *Rule, ev *Event, env *Env) bool {
	switch kind {
	case "content":
		if r.Pattern == nil {
			return false
		}
		return eventMatch(ev, "content.body", *r.Pattern)
	case "room":
		return eventMatch(ev, "room_id", r.RuleID)
	case "sender":
		return eventMatch(ev, "sender", r.RuleID)
	}
	for i := range r.Conditions {
		if !conditionMatches(&r.Conditions[i], ev, env) {
			return false
		}
	}
	return true
}

func conditionMatches(c *Condition, ev *Event, env *Env) bool {
	switch c.Kind {
	case "event_match":
		return c.Pattern != nil && eventMatch(ev, c.Key, *c.Pattern)
	case "event_property_is":
		v, ok := lookup(ev.m, c.Key)
		return ok && scalarEqual(v, c.Value)
	case "event_property_contains":
		v, ok := lookup(ev.m, c.Key)
		arr, isArr := v.([]any)
		if !ok || !isArr {
			return false
		}
		for _, x := range arr {
			if scalarEqual(x, c.Value) {
				return true
			}
		}
		return false
	case "contains_display_name":
		if !ev.hasBody || env == nil || env.DisplayName == "" {
			return false
		}
		return wordMatch(ev.bodyLower, strings.ToLower(env.DisplayName), false)
	case "room_member_count":
		if env == nil {
			return false
		}
		op, n, ok := parseIs(c.Is)
		if !ok {
			return false
		}
		m := int64(env.MemberCount)
		switch op {
		case "==":
			return m == n
		case "<":
			return m < n
		case ">":
			return m > n
		case "<=":
			return m <= n
		case ">=":
			return m >= n
		}
		return false
	case "sender_notification_permission":
		if env == nil {
			return false
		}
		need := int64(50)
		if env.NotificationPower != nil {
			need = env.NotificationPower(c.Key)
		}
		return env.SenderPower >= need
	}
	// Unknown condition kinds never match (spec "Conditions").
	return false
}

// parseIs parses room_member_count's "is": an optional operator (==, <, >,
// >=, <=) and a number.
func parseIs(is string) (op string, n int64, ok bool) {
	op = "=="
	for _, p := range []string{"==", "<=", ">=", "<", ">"} {
		if strings.HasPrefix(is, p) {
			op, is = p, is[len(p):]
			break
		}
	}
	n, err := strconv.ParseInt(is, 10, 64)
	return op, n, err == nil && n >= 0
}

func parseEvent(b []byte) map[string]any {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if d.Decode(&m) != nil {
		return nil
	}
	return m
}

// splitKey splits a dotted key into path segments; "\." is a literal dot
// and "\\" a literal backslash (spec v1.7 "Conditions").
func splitKey(key string) []string {
	if v, ok := splitCache.Load(key); ok {
		return v.([]string)
	}
	parts := splitKeyUncached(key)
	if splitCacheLen.Add(1) <= maxSplitCache {
		splitCache.Store(key, parts)
	}
	return parts
}

// Split keys are kept (condition keys repeat across every user's rules);
// at most maxSplitCache of them, so uploaded rules cannot grow it forever.
var (
	splitCache    sync.Map
	splitCacheLen atomic.Int64
)

const maxSplitCache = 10_000

func splitKeyUncached(key string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '\\' && i+1 < len(key) && (key[i+1] == '.' || key[i+1] == '\\'):
			cur.WriteByte(key[i+1])
			i++
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

func lookup(ev map[string]any, key string) (any, bool) {
	var cur any = ev
	for _, p := range splitKey(key) {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func lookupString(ev map[string]any, key string) (string, bool) {
	v, ok := lookup(ev, key)
	s, isStr := v.(string)
	return s, ok && isStr
}

func scalarEqual(v any, want json.RawMessage) bool {
	d := json.NewDecoder(bytes.NewReader(want))
	d.UseNumber()
	var w any
	if d.Decode(&w) != nil {
		return false
	}
	switch wv := w.(type) {
	case nil:
		return v == nil
	case bool:
		b, ok := v.(bool)
		return ok && b == wv
	case string:
		s, ok := v.(string)
		return ok && s == wv
	case json.Number:
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		a, err1 := n.Int64()
		b, err2 := wv.Int64()
		return err1 == nil && err2 == nil && a == b
	}
	return false
}

// eventMatch implements event_match: a case-insensitive glob (* and ?) that
// must match the whole string value at key; for content.body it matches at
// word boundaries anywhere in the body.
func eventMatch(ev *Event, key, pattern string) bool {
	if key == "content.body" {
		return ev.hasBody && wordMatch(ev.bodyLower, strings.ToLower(pattern), false)
	}
	v, ok := lookupString(ev.m, key)
	if !ok {
		return false
	}
	return wordMatch(strings.ToLower(v), strings.ToLower(pattern), true)
}

// wordMatch matches glob against s: all of s when whole, else any run of s
// that starts and ends at word boundaries. Globs become regular expressions,
// which Go matches in linear time.
func wordMatch(s, glob string, whole bool) bool {
	if !strings.ContainsAny(glob, "*?") {
		if whole {
			return s == glob
		}
		return literalWordMatch(s, glob)
	}
	return globRegexp(glob, whole).MatchString(s)
}

// literalWordMatch finds word at word boundaries in s without a regexp:
// the common case (user names, display names, keywords).
func literalWordMatch(s, word string) bool {
	if word == "" {
		return false
	}
	for off := 0; off <= len(s)-len(word); {
		i := strings.Index(s[off:], word)
		if i < 0 {
			return false
		}
		i += off
		j := i + len(word)
		if !wordRuneBefore(s, i) && !wordRuneAt(s, j) {
			return true
		}
		_, n := utf8.DecodeRuneInString(s[i:])
		off = i + n
	}
	return false
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }

func wordRuneBefore(s string, i int) bool {
	if i == 0 {
		return false
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return isWordRune(r)
}

func wordRuneAt(s string, j int) bool {
	if j >= len(s) {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s[j:])
	return isWordRune(r)
}

var (
	reMu    sync.Mutex
	reCache = map[string]*regexp.Regexp{}
)

const maxCachedGlobs = 4096

func globRegexp(glob string, whole bool) *regexp.Regexp {
	key := glob + "\x00" + strconv.FormatBool(whole)
	reMu.Lock()
	re := reCache[key]
	reMu.Unlock()
	if re != nil {
		return re
	}
	var b strings.Builder
	for _, r := range glob {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	const nonWord = `[^\p{L}\p{N}_]`
	if whole {
		re = regexp.MustCompile(`(?s)^(?:` + b.String() + `)$`)
	} else {
		re = regexp.MustCompile(`(?s)(?:^|` + nonWord + `)(?:` + b.String() + `)(?:` + nonWord + `|$)`)
	}
	reMu.Lock()
	if len(reCache) >= maxCachedGlobs {
		clear(reCache)
	}
	reCache[key] = re
	reMu.Unlock()
	return re
}
