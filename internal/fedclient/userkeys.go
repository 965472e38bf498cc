package fedclient

import (
	"context"
	"encoding/json"
	"net/http"
)

// End-to-end encryption calls (Server-Server API, "End-to-End Encryption"
// and "Device Management"); answers stay raw for internal/keys to check.

// UserDevices asks GET /_matrix/federation/v1/user/devices/{userId}.
func (c *Client) UserDevices(ctx context.Context, dest, userID string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodGet, dest: dest, path: "/_matrix/federation/v1/user/devices/" + esc(userID), out: &out})
	return out, err
}

// QueryKeys asks POST /_matrix/federation/v1/user/keys/query.
func (c *Client) QueryKeys(ctx context.Context, dest string, deviceKeys map[string][]string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodPost, dest: dest, path: "/_matrix/federation/v1/user/keys/query", body: map[string]any{"device_keys": deviceKeys}, out: &out})
	return out, err
}

// ClaimKeys asks POST /_matrix/federation/v1/user/keys/claim.
func (c *Client) ClaimKeys(ctx context.Context, dest string, oneTimeKeys map[string]map[string]string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.do(ctx, request{method: http.MethodPost, dest: dest, path: "/_matrix/federation/v1/user/keys/claim", body: map[string]any{"one_time_keys": oneTimeKeys}, out: &out})
	return out, err
}

// HTTPStatus is the status the remote server answered with (for callers
// that report it without importing this package).
func (e *Error) HTTPStatus() int { return e.Status }
