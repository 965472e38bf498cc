package accountdata

import (
	"context"
	"encoding/json"
	"errors"

	"conclave/internal/store"
)

// TypeIgnoredUsers lists the users a user ignores (spec: "Ignoring Users").
const TypeIgnoredUsers = "m.ignored_user_list"

// MaxIgnoredUsers bounds how many ignored users are honoured.
const MaxIgnoredUsers = 10000

// IgnoredUsers returns the set of users userID ignores (nil when none).
// Content that is not the spec's shape ignores nobody.
func (s *Service) IgnoredUsers(ctx context.Context, userID string) (map[string]bool, error) {
	c, err := s.store.GetAccountData(ctx, userID, "", TypeIgnoredUsers)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseIgnored(c), nil
}

// ParseIgnored reads the ignored_users object of m.ignored_user_list content.
func ParseIgnored(content json.RawMessage) map[string]bool {
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.IgnoredUsers) == 0 {
		return nil
	}
	out := make(map[string]bool, min(len(c.IgnoredUsers), MaxIgnoredUsers))
	for u := range c.IgnoredUsers {
		if len(out) >= MaxIgnoredUsers {
			break
		}
		out[u] = true
	}
	return out
}
