// Package profile owns users' global profiles (display name, avatar URL) and
// the user directory search built on them.
package profile

import (
	"context"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Limits, as Synapse applies them (the spec sets none): a display name of at
// most 256 characters and an avatar URL of at most 1000.
const (
	MaxDisplayNameLen = 256
	MaxAvatarURLLen   = 1000
	// Directory search limits: default and cap of results, longest term.
	DefaultSearchLimit = 10
	MaxSearchLimit     = 50
	MaxSearchTermLen   = 1024
)

// Store is what the service needs.
type Store interface {
	store.Profiles
	GetUser(ctx context.Context, userID string) (*store.User, error)
	SearchUserDirectory(ctx context.Context, searcher, term string, limit int) ([]store.DirectoryEntry, error)
	GetAccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error)
}

// Service is the profile service.
type Service struct {
	store      Store
	serverName string
	// Remote, if set, gets another server's user's profile (federation's
	// /query/profile).
	Remote func(ctx context.Context, userID string) (*store.Profile, error)
	// OnChange, if set, is called after a successful change of the user's
	// own profile with the new profile: the room service sends updated
	// m.room.member events into the user's joined rooms. Errors it meets are
	// its own to log; the profile change stands.
	OnChange func(ctx context.Context, userID string, p store.Profile)
}

// New returns the service.
func New(st Store, serverName string) *Service {
	return &Service{store: st, serverName: serverName}
}

// Get returns userID's profile: 400 M_INVALID_PARAM for a malformed ID, 404
// M_NOT_FOUND for users that are not (or no longer) on this server. Other
// servers' users are asked of their server (Remote), or not found when
// federation is off.
func (s *Service) Get(ctx context.Context, userID string) (*store.Profile, error) {
	if !matrix.ValidUserID(userID) {
		return nil, matrix.InvalidParam("Invalid user ID")
	}
	if matrix.ServerOf(userID) != s.serverName {
		if s.Remote != nil {
			return s.Remote(ctx, userID)
		}
		return nil, matrix.NotFound("Profile was not found")
	}
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, matrix.NotFound("Profile was not found")
	}
	if err != nil {
		return nil, err
	}
	if u.Deactivated {
		return nil, matrix.NotFound("Profile was not found")
	}
	p, err := s.store.GetProfile(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return &store.Profile{UserID: userID}, nil
	}
	return p, err
}

// SetDisplayName changes target's display name on behalf of requester; ""
// removes it.
func (s *Service) SetDisplayName(ctx context.Context, requester, target, name string) error {
	if err := s.checkWrite(ctx, requester, target); err != nil {
		return err
	}
	if utf8.RuneCountInString(name) > MaxDisplayNameLen {
		return matrix.InvalidParam("Displayname is too long (max %d)", MaxDisplayNameLen)
	}
	if err := s.store.SetDisplayName(ctx, target, name); err != nil {
		return err
	}
	return s.changed(ctx, target)
}

// SetAvatarURL changes target's avatar URL on behalf of requester; ""
// removes it. Like Synapse, any string is accepted (clients normally send an
// mxc:// URI; the spec types it only as a URI and older clients and SyTest
// send http URLs).
func (s *Service) SetAvatarURL(ctx context.Context, requester, target, url string) error {
	if err := s.checkWrite(ctx, requester, target); err != nil {
		return err
	}
	if len(url) > MaxAvatarURLLen {
		return matrix.InvalidParam("Avatar URL is too long (max %d)", MaxAvatarURLLen)
	}
	if err := s.store.SetAvatarURL(ctx, target, url); err != nil {
		return err
	}
	return s.changed(ctx, target)
}

func (s *Service) checkWrite(ctx context.Context, requester, target string) error {
	if !matrix.ValidUserID(target) {
		return matrix.InvalidParam("Invalid user ID")
	}
	if requester != target {
		return matrix.Forbidden("You cannot change another user's profile")
	}
	_, err := s.Get(ctx, target)
	return err
}

func (s *Service) changed(ctx context.Context, userID string) error {
	if s.OnChange == nil {
		return nil
	}
	p, err := s.store.GetProfile(ctx, userID)
	if err != nil {
		return err
	}
	s.OnChange(ctx, userID, *p)
	return nil
}

// SearchResult is the answer of a user directory search.
type SearchResult struct {
	Results []store.DirectoryEntry
	Limited bool
}

// Search runs a user directory search for searcher. limit <= 0 means the
// default; larger limits are capped.
func (s *Service) Search(ctx context.Context, searcher, term string, limit int) (*SearchResult, error) {
	if len(term) > MaxSearchTermLen {
		return nil, matrix.InvalidParam("search_term is longer than %d bytes", MaxSearchTermLen)
	}
	if limit <= 0 {
		limit = DefaultSearchLimit
	}
	limit = min(limit, MaxSearchLimit)
	// Users who hid their profile are left out; the store is asked again
	// for more (a bounded number of times) when they thin a page out.
	want, fetch := limit+1, limit+1
	var rows []store.DirectoryEntry
	for round := 0; ; round++ {
		got, err := s.store.SearchUserDirectory(ctx, searcher, term, fetch)
		if err != nil {
			return nil, err
		}
		rows = rows[:0]
		for _, e := range got {
			hidden, err := s.hidden(ctx, e.UserID)
			if err != nil {
				return nil, err
			}
			if !hidden {
				rows = append(rows, e)
			}
		}
		if len(rows) >= want || len(got) < fetch || round == maxHiddenRounds {
			break
		}
		fetch *= 4
	}
	res := &SearchResult{Results: rows}
	if len(rows) > limit {
		res.Results, res.Limited = rows[:limit], true
	}
	return res, nil
}

// HideProfileType is the global account data with which a user leaves the
// user directory: {"hide_profile": true} (Tchap's red list,
// tchapgouv/tchap-red-list: hidden users are not found by search).
const HideProfileType = "im.vector.hide_profile"

// maxHiddenRounds bounds the searches again when hidden users thin out a
// page (each asks four times as many rows).
const maxHiddenRounds = 2

// hidden reports whether a local user hid their profile.
func (s *Service) hidden(ctx context.Context, userID string) (bool, error) {
	if matrix.ServerOf(userID) != s.serverName {
		return false, nil
	}
	raw, err := s.store.GetAccountData(ctx, userID, "", HideProfileType)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var c struct {
		Hide bool `json:"hide_profile"`
	}
	return json.Unmarshal(raw, &c) == nil && c.Hide, nil
}
