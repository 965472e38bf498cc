package push

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"net/url"
	"slices"
	"sync"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// AccountDataType is the global account data event that carries a user's
// push rules to clients through /sync.
const AccountDataType = "m.push_rules"

// Service keeps users' push rules and pushers. Rules are stored as the
// m.push_rules account data (normalized: the full rule set clients see), so
// /sync delivers every change at the change's stream position and wakes
// long-polls through the account data service.
type Service struct {
	pushers store.Pushers
	readAD  store.AccountData
	// PutAccountData stores server-managed account data and wakes /sync
	// (accountdata.Service.PutInternal).
	PutAccountData func(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error
	Now            func() time.Time
	// Notifs reads notifications for GET /notifications (wired by the
	// homeserver; nil answers an empty list).
	Notifs NotificationStore
	// EmailOwner returns the user an e-mail address is bound to ("" if
	// none): set when the server sends mail, it allows email pushers.
	EmailOwner func(ctx context.Context, address string) (string, error)

	locks [64]sync.Mutex // read-modify-write of one user's rules
}

// New returns the service.
func New(pushers store.Pushers, ad store.AccountData, put func(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error) *Service {
	return &Service{pushers: pushers, readAD: ad, PutAccountData: put, Now: time.Now}
}

func (s *Service) lock(userID string) func() {
	h := fnv.New32a()
	h.Write([]byte(userID))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}

// Rules returns the user's rule set: the defaults with the user's changes.
func (s *Service) Rules(ctx context.Context, userID string) (*Ruleset, error) {
	c, err := s.readAD.GetAccountData(ctx, userID, "", AccountDataType)
	if errors.Is(err, store.ErrNotFound) {
		return Defaults(userID), nil
	}
	if err != nil {
		return nil, err
	}
	var acc Account
	if json.Unmarshal(c, &acc) != nil || acc.Global == nil {
		return Defaults(userID), nil
	}
	return Normalize(userID, acc.Global), nil
}

// DefaultContent is the m.push_rules content of a user who never changed a
// rule, for an initial /sync.
func DefaultContent(userID string) json.RawMessage {
	b, _ := json.Marshal(Account{Global: Defaults(userID)})
	return b
}

func (s *Service) modify(ctx context.Context, userID string, fn func(rs *Ruleset) error) error {
	defer s.lock(userID)()
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return err
	}
	if err := fn(rs); err != nil {
		return err
	}
	if CountUserRules(rs) > MaxUserRules {
		return matrix.InvalidParam("At most %d push rules are allowed", MaxUserRules)
	}
	b, err := json.Marshal(Account{Global: rs})
	if err != nil {
		return err
	}
	return s.PutAccountData(ctx, userID, "", AccountDataType, b)
}

// CheckPath validates the scope and kind of a rule path. Like Synapse, an
// unknown scope or kind is 400 M_UNRECOGNIZED.
func CheckPath(scope, kind string) error {
	if scope != "global" {
		return matrix.Errorf(400, matrix.ErrUnrecognized, "Unknown push rule scope %q", scope)
	}
	if kind != "" && !ValidKind(kind) {
		return matrix.Errorf(400, matrix.ErrUnrecognized, "Unknown push rule kind %q", kind)
	}
	return nil
}

func notFound() error { return matrix.NotFound("Unknown push rule") }

// Rule returns one rule.
func (s *Service) Rule(ctx context.Context, userID, kind, id string) (*Rule, error) {
	rs, err := s.Rules(ctx, userID)
	if err != nil {
		return nil, err
	}
	r, _ := rs.Find(kind, id)
	if r == nil {
		return nil, notFound()
	}
	return r, nil
}

// PutRule creates or updates a user-defined rule (PUT
// /pushrules/global/{kind}/{ruleId}). before and after ("" when absent)
// name user-defined rules of the same kind; before wins when both are set.
// An updated rule keeps its place unless before or after moves it; a new
// one becomes the most important user-defined rule of its kind.
func (s *Service) PutRule(ctx context.Context, userID, kind, id string, body *NewRule, before, after string) error {
	r, err := Build(kind, id, body)
	if err != nil {
		return err
	}
	for _, rel := range []string{before, after} {
		if rel != "" && rel[0] == '.' {
			return matrix.InvalidParam("Rules cannot be placed relative to server-default rules")
		}
	}
	return s.modify(ctx, userID, func(rs *Ruleset) error {
		l := rs.List(kind)
		list := *l
		at := -1
		if _, i := rs.Find(kind, id); i >= 0 {
			at = i
			list = slices.Delete(list, i, i+1)
		}
		lo, hi := UserRules(kind, list)
		rel := func(rid string) (int, error) {
			for i := lo; i < hi; i++ {
				if list[i].RuleID == rid {
					return i, nil
				}
			}
			return 0, matrix.NotFound("Unknown push rule %q to place the rule relative to", rid)
		}
		switch {
		case before != "":
			i, err := rel(before)
			if err != nil {
				return err
			}
			at = i
		case after != "":
			i, err := rel(after)
			if err != nil {
				return err
			}
			at = i + 1
		case at < 0:
			at = lo
		}
		*l = slices.Insert(list, at, r)
		return nil
	})
}

// DeleteRule removes a user-defined rule. Server-default rules cannot be
// removed; like Synapse, that is 404 (only user rules are stored).
func (s *Service) DeleteRule(ctx context.Context, userID, kind, id string) error {
	return s.modify(ctx, userID, func(rs *Ruleset) error {
		r, i := rs.Find(kind, id)
		if r == nil || r.Default {
			return notFound()
		}
		l := rs.List(kind)
		*l = slices.Delete(*l, i, i+1)
		return nil
	})
}

// SetEnabled enables or disables a rule, server-default rules included.
func (s *Service) SetEnabled(ctx context.Context, userID, kind, id string, enabled bool) error {
	return s.modify(ctx, userID, func(rs *Ruleset) error {
		r, _ := rs.Find(kind, id)
		if r == nil {
			return notFound()
		}
		r.Enabled = enabled
		return nil
	})
}

// SetActions replaces a rule's actions, server-default rules included.
func (s *Service) SetActions(ctx context.Context, userID, kind, id string, actions []json.RawMessage) error {
	if err := CheckActions(actions); err != nil {
		return err
	}
	return s.modify(ctx, userID, func(rs *Ruleset) error {
		r, _ := rs.Find(kind, id)
		if r == nil {
			return notFound()
		}
		r.Actions = actions
		return nil
	})
}

// Pushers.

// Bounds on pushers (the spec gives 512 bytes for pushkey, 64 characters
// for app_id).
const (
	MaxPushKeyLen   = 512
	MaxAppIDLen     = 64
	MaxPusherString = 255
	MaxPusherData   = 4096
	MaxPushers      = 100
)

// PusherRequest is the body of POST /pushers/set.
type PusherRequest struct {
	PushKey           *string         `json:"pushkey"`
	Kind              json.RawMessage `json:"kind"`
	AppID             *string         `json:"app_id"`
	AppDisplayName    *string         `json:"app_display_name"`
	DeviceDisplayName *string         `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              *string         `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
}

// SetPusher creates, updates or (kind null) deletes a pusher of the
// session's user, bound to the session's device.
func (s *Service) SetPusher(ctx context.Context, sess *store.Session, req *PusherRequest) error {
	if req.PushKey == nil || req.AppID == nil {
		return matrix.MissingParam("pushkey and app_id are required")
	}
	if len(*req.PushKey) == 0 || len(*req.PushKey) > MaxPushKeyLen {
		return matrix.InvalidParam("pushkey must be 1 to %d bytes", MaxPushKeyLen)
	}
	if len(*req.AppID) == 0 || len([]rune(*req.AppID)) > MaxAppIDLen {
		return matrix.InvalidParam("app_id must be 1 to %d characters", MaxAppIDLen)
	}
	if len(req.Kind) == 0 {
		return matrix.MissingParam("kind is required (null deletes the pusher)")
	}
	if string(req.Kind) == "null" {
		return s.pushers.DeletePusher(ctx, sess.UserID, *req.AppID, *req.PushKey)
	}
	var kind string
	if json.Unmarshal(req.Kind, &kind) != nil {
		return matrix.BadJSON("kind must be a string or null")
	}
	switch kind {
	case "http":
	case "email":
		return s.setEmailPusher(ctx, sess, req)
	default:
		return matrix.InvalidParam("Unknown pusher kind %q", kind)
	}
	if req.AppDisplayName == nil || req.DeviceDisplayName == nil || req.Lang == nil || len(req.Data) == 0 {
		return matrix.MissingParam("app_display_name, device_display_name, lang and data are required")
	}
	for _, v := range []string{*req.AppDisplayName, *req.DeviceDisplayName, *req.Lang, req.ProfileTag} {
		if len(v) > MaxPusherString {
			return matrix.InvalidParam("Pusher strings are limited to %d bytes", MaxPusherString)
		}
	}
	if len(req.Data) > MaxPusherData {
		return matrix.InvalidParam("data is larger than %d bytes", MaxPusherData)
	}
	var data struct {
		URL    *string `json:"url"`
		Format *string `json:"format"`
	}
	if req.Data[0] != '{' || json.Unmarshal(req.Data, &data) != nil {
		return matrix.BadJSON("data must be an object with string url and format")
	}
	// Spec (POST /pushers/set, data.url): "MUST be an HTTPS URL with a
	// path of /_matrix/push/v1/notify".
	if data.URL == nil {
		return matrix.MissingParam("data.url is required for http pushers")
	}
	u, err := url.Parse(*data.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "/_matrix/push/v1/notify" || u.User != nil || u.Fragment != "" {
		return matrix.InvalidParam("data.url must be an HTTPS URL with the path /_matrix/push/v1/notify")
	}
	if data.Format != nil && *data.Format != "event_id_only" {
		return matrix.InvalidParam("Unknown data.format %q", *data.Format)
	}
	p := &store.Pusher{UserID: sess.UserID, DeviceID: sess.DeviceID, AppID: *req.AppID, PushKey: *req.PushKey, Kind: kind,
		AppDisplayName: *req.AppDisplayName, DeviceDisplayName: *req.DeviceDisplayName, ProfileTag: req.ProfileTag,
		Lang: *req.Lang, Data: req.Data, CreatedTS: s.Now().UnixMilli()}
	err = s.pushers.SetPusher(ctx, p, !req.Append, MaxPushers)
	if errors.Is(err, store.ErrTooManyPushers) {
		return matrix.InvalidParam("At most %d pushers are allowed", MaxPushers)
	}
	return err
}

// setEmailPusher: an e-mail pusher mails missed notifications to its
// pushkey, which must be an address bound to the user (Synapse's rule);
// data is kept as given (an object, e.g. {"brand": …}).
func (s *Service) setEmailPusher(ctx context.Context, sess *store.Session, req *PusherRequest) error {
	if s.EmailOwner == nil {
		return matrix.InvalidParam("Email pushers are not supported: this server sends no mail")
	}
	if req.AppDisplayName == nil || req.DeviceDisplayName == nil || req.Lang == nil || len(req.Data) == 0 {
		return matrix.MissingParam("app_display_name, device_display_name, lang and data are required")
	}
	for _, v := range []string{*req.AppDisplayName, *req.DeviceDisplayName, *req.Lang, req.ProfileTag} {
		if len(v) > MaxPusherString {
			return matrix.InvalidParam("Pusher strings are limited to %d bytes", MaxPusherString)
		}
	}
	if len(req.Data) > MaxPusherData || req.Data[0] != '{' || !json.Valid(req.Data) {
		return matrix.BadJSON("data must be an object of at most %d bytes", MaxPusherData)
	}
	owner, err := s.EmailOwner(ctx, *req.PushKey)
	if err != nil {
		return err
	}
	if owner != sess.UserID {
		return matrix.InvalidParam("The pushkey of an email pusher must be one of your e-mail addresses")
	}
	p := &store.Pusher{UserID: sess.UserID, DeviceID: sess.DeviceID, AppID: *req.AppID, PushKey: *req.PushKey, Kind: "email",
		AppDisplayName: *req.AppDisplayName, DeviceDisplayName: *req.DeviceDisplayName, ProfileTag: req.ProfileTag,
		Lang: *req.Lang, Data: req.Data, CreatedTS: s.Now().UnixMilli()}
	err = s.pushers.SetPusher(ctx, p, !req.Append, MaxPushers)
	if errors.Is(err, store.ErrTooManyPushers) {
		return matrix.InvalidParam("At most %d pushers are allowed", MaxPushers)
	}
	return err
}

// PusherJSON is a pusher as GET /pushers shows it.
type PusherJSON struct {
	PushKey           string          `json:"pushkey"`
	Kind              string          `json:"kind"`
	AppID             string          `json:"app_id"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
}

// Pushers lists the user's pushers.
func (s *Service) Pushers(ctx context.Context, userID string) ([]PusherJSON, error) {
	ps, err := s.pushers.PushersOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]PusherJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, PusherJSON{PushKey: p.PushKey, Kind: p.Kind, AppID: p.AppID, AppDisplayName: p.AppDisplayName,
			DeviceDisplayName: p.DeviceDisplayName, ProfileTag: p.ProfileTag, Lang: p.Lang, Data: p.Data})
	}
	return out, nil
}
