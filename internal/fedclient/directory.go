package fedclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// PublicRooms asks dest for its public room directory
// (GET /_matrix/federation/v1/publicRooms with query, or POST with body
// when body is not nil: the form that carries a filter) and returns the
// raw answer.
func (c *Client) PublicRooms(ctx context.Context, dest string, query url.Values, body any) (json.RawMessage, error) {
	var out json.RawMessage
	r := request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/publicRooms", query: query, out: &out}
	if body != nil {
		r.method, r.query, r.body = http.MethodPost, nil, body
	}
	err := c.do(ctx, r)
	return out, err
}

// Hierarchy asks dest for a space's children
// (GET /_matrix/federation/v1/hierarchy/{roomId}?suggested_only=) and
// returns the raw answer.
func (c *Client) Hierarchy(ctx context.Context, dest, roomID string, suggestedOnly bool) (json.RawMessage, error) {
	var out json.RawMessage
	q := url.Values{"suggested_only": {"false"}}
	if suggestedOnly {
		q.Set("suggested_only", "true")
	}
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/hierarchy/" + esc(roomID), query: q, out: &out})
	return out, err
}
