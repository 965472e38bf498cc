// Package adminclient talks to a running server's Synapse-compatible admin
// API for `conclave admin`: shared-secret registration.
package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"conclave/internal/accounts"
)

// Register creates an account through /_synapse/admin/v1/register: it
// fetches a nonce, signs it with the shared secret and posts the account.
// It returns the new user ID.
func Register(ctx context.Context, hc *http.Client, baseURL, secret, user, password string, admin bool) (string, error) {
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	url := strings.TrimRight(baseURL, "/") + "/_synapse/admin/v1/register"
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := call(ctx, hc, "GET", url, nil, &nonce); err != nil {
		return "", err
	}
	if nonce.Nonce == "" {
		return "", fmt.Errorf("server sent no nonce")
	}
	body := map[string]any{
		"nonce": nonce.Nonce, "username": user, "password": password, "admin": admin,
		"mac": accounts.SharedSecretMAC(secret, nonce.Nonce, user, password, admin, nil),
	}
	var res struct {
		UserID string `json:"user_id"`
	}
	if err := call(ctx, hc, "POST", url, body, &res); err != nil {
		return "", err
	}
	return res.UserID, nil
}

func call(ctx context.Context, hc *http.Client, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return err
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Errcode != "" {
			return fmt.Errorf("%s %s: %d %s: %s", method, url, res.StatusCode, e.Errcode, e.Error)
		}
		return fmt.Errorf("%s %s: HTTP %d", method, url, res.StatusCode)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: bad response: %v", method, url, err)
	}
	return nil
}
