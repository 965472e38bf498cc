// Package loadtest drives a Matrix homeserver over the Client-Server API from
// another process and measures it: the scenarios behind cmd/conclave-load.
// It speaks only public Matrix HTTP (plus the Synapse-compatible shared-secret
// registration when given a secret), so it measures any homeserver, and it
// reads the server's CPU time and memory from /proc given its PID.
package loadtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPError is a non-2xx answer from the homeserver.
type HTTPError struct {
	Status  int
	ErrCode string
	Body    string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %.200s", e.Status, e.ErrCode, e.Body)
}

// Server is the homeserver under test.
type Server struct {
	Base   string // http://127.0.0.1:8008
	HTTP   *http.Client
	Secret string // registration shared secret; empty: open registration
}

// NewServer checks that base is a loopback URL (the tool never loads a
// server it does not run next to) and returns a Server with a connection
// pool large enough for conns concurrent requests.
func NewServer(base, secret string, conns int) (*Server, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("loadtest: bad server URL %q", base)
	}
	host := u.Hostname()
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("loadtest: %s is not a loopback address; the load tool only drives a local server", host)
		}
	}
	tr := &http.Transport{
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16,
		MaxConnsPerHost:     conns + 16,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &Server{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Transport: tr}, Secret: secret}, nil
}

// User is one logged-in device.
type User struct {
	srv      *Server
	Name     string
	UserID   string
	DeviceID string
	Token    string
	Password string
}

// Do sends one request and decodes a 2xx JSON answer into out (if non-nil).
// 429 answers are retried after the server's retry_after_ms, a bounded
// number of times, so rate limits slow a run down instead of failing it.
func (s *Server) Do(ctx context.Context, token, method, path string, body, out any) error {
	data, err := s.doRaw(ctx, token, method, path, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// doRaw is Do returning the raw 2xx body.
func (s *Server) doRaw(ctx context.Context, token, method, path string, body any) ([]byte, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	for attempt := 0; ; attempt++ {
		var rd io.Reader
		if payload != nil {
			rd = bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(ctx, method, s.Base+path, rd)
		if err != nil {
			return nil, err
		}
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := s.HTTP.Do(req)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return nil, err
		}
		if res.StatusCode/100 == 2 {
			return data, nil
		}
		var e struct {
			ErrCode    string `json:"errcode"`
			RetryAfter int64  `json:"retry_after_ms"`
		}
		_ = json.Unmarshal(data, &e)
		if res.StatusCode == http.StatusTooManyRequests && attempt < 20 {
			wait := time.Duration(e.RetryAfter) * time.Millisecond
			if wait <= 0 || wait > 10*time.Second {
				wait = time.Second
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, &HTTPError{Status: res.StatusCode, ErrCode: e.ErrCode, Body: string(data)}
	}
}

// Do is Server.Do with the user's access token.
func (u *User) Do(ctx context.Context, method, path string, body, out any) error {
	return u.srv.Do(ctx, u.Token, method, path, body, out)
}

type loginAnswer struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
	DeviceID    string `json:"device_id"`
}

// Register creates the account name. With a shared secret it uses the
// Synapse-compatible admin API; otherwise open registration with
// m.login.dummy. An empty password registers without one when the server
// allows it (no password hash to compute, so setting up thousands of users
// is quick), and with a generated one if the server wants one.
func (s *Server) Register(ctx context.Context, name, password string) (*User, error) {
	var a loginAnswer
	if s.Secret != "" {
		if password == "" {
			password = "load-test-" + name
		}
		var n struct {
			Nonce string `json:"nonce"`
		}
		if err := s.Do(ctx, "", "GET", "/_synapse/admin/v1/register", nil, &n); err != nil {
			return nil, err
		}
		mac := hmac.New(sha1.New, []byte(s.Secret))
		mac.Write([]byte(n.Nonce + "\x00" + name + "\x00" + password + "\x00notadmin"))
		err := s.Do(ctx, "", "POST", "/_synapse/admin/v1/register", map[string]any{
			"nonce": n.Nonce, "username": name, "password": password, "admin": false, "mac": hex.EncodeToString(mac.Sum(nil)),
		}, &a)
		if err != nil {
			return nil, err
		}
	} else {
		body := map[string]any{"username": name, "auth": map[string]any{"type": "m.login.dummy"}, "inhibit_login": false}
		if password != "" {
			body["password"] = password
		}
		err := s.Do(ctx, "", "POST", "/_matrix/client/v3/register", body, &a)
		var he *HTTPError
		if password == "" && errors.As(err, &he) && he.Status == 400 && he.ErrCode != "M_USER_IN_USE" {
			password = "load-test-" + name
			body["password"] = password
			err = s.Do(ctx, "", "POST", "/_matrix/client/v3/register", body, &a)
		}
		if err != nil {
			return nil, err
		}
	}
	return &User{srv: s, Name: name, UserID: a.UserID, DeviceID: a.DeviceID, Token: a.AccessToken, Password: password}, nil
}

// Login opens another device of an account created with a password.
func (s *Server) Login(ctx context.Context, name, password string) (*User, error) {
	var a loginAnswer
	err := s.Do(ctx, "", "POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": name}, "password": password,
	}, &a)
	if err != nil {
		return nil, err
	}
	return &User{srv: s, Name: name, UserID: a.UserID, DeviceID: a.DeviceID, Token: a.AccessToken, Password: password}, nil
}

// CreateRoom creates a room with the given preset and returns its ID.
func (u *User) CreateRoom(ctx context.Context, preset string, extra map[string]any) (string, error) {
	body := map[string]any{"preset": preset}
	for k, v := range extra {
		body[k] = v
	}
	var a struct {
		RoomID string `json:"room_id"`
	}
	err := u.Do(ctx, "POST", "/_matrix/client/v3/createRoom", body, &a)
	return a.RoomID, err
}

// Join joins a room by ID.
func (u *User) Join(ctx context.Context, roomID string) error {
	return u.Do(ctx, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID), map[string]any{}, nil)
}

// JoinVia joins a room by ID through the server of via (a user ID) when it
// is on another server than u: a join over federation.
func (u *User) JoinVia(ctx context.Context, roomID, via string) error {
	server := via[strings.IndexByte(via, ':')+1:]
	if server == u.UserID[strings.IndexByte(u.UserID, ':')+1:] {
		return u.Join(ctx, roomID)
	}
	return u.Do(ctx, "POST", "/_matrix/client/v3/join/"+url.PathEscape(roomID)+"?server_name="+url.QueryEscape(server), map[string]any{}, nil)
}

// Send sends one event and returns its ID.
func (u *User) Send(ctx context.Context, roomID, evType, txnID string, content any) (string, error) {
	var a struct {
		EventID string `json:"event_id"`
	}
	err := u.Do(ctx, "PUT", "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/"+url.PathEscape(evType)+"/"+url.PathEscape(txnID), content, &a)
	return a.EventID, err
}

// SyncResponse is the part of a /sync answer the scenarios read.
type SyncResponse struct {
	Bytes     int    `json:"-"` // size of the answer
	NextBatch string `json:"next_batch"`
	Rooms     struct {
		Join map[string]struct {
			Timeline struct {
				Events  []SyncEvent `json:"events"`
				Limited bool        `json:"limited"`
			} `json:"timeline"`
			State struct {
				Events []json.RawMessage `json:"events"`
			} `json:"state"`
		} `json:"join"`
	} `json:"rooms"`
	DeviceLists struct {
		Changed []string `json:"changed"`
	} `json:"device_lists"`
	ToDevice struct {
		Events []struct {
			Type    string `json:"type"`
			Sender  string `json:"sender"`
			Content struct {
				Seq int64 `json:"org.conclave.load.seq"`
			} `json:"content"`
		} `json:"events"`
	} `json:"to_device"`
}

// SyncEvent is a timeline event as far as the scenarios care.
type SyncEvent struct {
	Type    string `json:"type"`
	EventID string `json:"event_id"`
	Sender  string `json:"sender"`
	Content struct {
		Seq *int64 `json:"org.conclave.load.seq"`
	} `json:"content"`
}

// Sync runs one /sync. filter is inline filter JSON ("" for none).
func (u *User) Sync(ctx context.Context, since, filter string, timeout time.Duration) (*SyncResponse, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if filter != "" {
		q.Set("filter", filter)
	}
	q.Set("timeout", strconv.FormatInt(timeout.Milliseconds(), 10))
	data, err := u.srv.doRaw(ctx, u.Token, "GET", "/_matrix/client/v3/sync?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	r := &SyncResponse{Bytes: len(data)}
	return r, json.Unmarshal(data, r)
}
