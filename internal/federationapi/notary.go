package federationapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"

	"conclave/internal/jsonhttp"
	"conclave/internal/keyring"
	"conclave/internal/matrix"
)

// MaxNotaryServers bounds the servers one POST /_matrix/key/v2/query may
// ask about; notaryParallel is how many of them are looked up at once.
const (
	MaxNotaryServers = 100
	notaryParallel   = 8
)

// notaryGet: "GET /_matrix/key/v2/query/{serverName}", another server's keys
// countersigned by us (Server-Server API, "Querying Keys Through Another
// Server"). Unauthenticated. A server outside the allow list is refused
// with 403 M_FORBIDDEN and never contacted; an unreachable server with no
// cached keys gives an empty server_keys.
func (a *API) notaryGet(w http.ResponseWriter, r *http.Request) {
	server := r.PathValue("serverName")
	if !matrix.ValidServerName(server) {
		jsonhttp.Error(w, r, matrix.InvalidParam("Not a server name: %q", server))
		return
	}
	min := a.Now().UnixMilli() // "If not supplied, the notary server MUST use the current time."
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			jsonhttp.Error(w, r, matrix.InvalidParam("minimum_valid_until_ts is not an integer"))
			return
		}
		min = n
	}
	if !a.allowed(server) {
		jsonhttp.Error(w, r, matrix.Forbidden("Federation denied with %s", server))
		return
	}
	resp, err := a.notaryResponse(r, server, min)
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	keys := []json.RawMessage{}
	if resp != nil {
		keys = append(keys, resp)
	}
	jsonhttp.OK(w, map[string]any{"server_keys": keys})
}

type notaryQuery struct {
	ServerKeys map[string]map[string]struct {
		MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
	} `json:"server_keys"`
}

// notaryPost: "POST /_matrix/key/v2/query", several servers at once. The
// key IDs asked for do not narrow the answer ("The notary server may return
// multiple keys regardless of the Key IDs given"); a server's answer is
// valid until the latest minimum_valid_until_ts asked for it. Servers
// outside the allow list, unreachable ones without cached keys, and
// invalid server names are left out of the answer.
func (a *API) notaryPost(w http.ResponseWriter, r *http.Request) {
	var q notaryQuery
	if err := jsonhttp.Read(r, 1<<20, &q); err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	if q.ServerKeys == nil {
		jsonhttp.Error(w, r, matrix.BadJSON("server_keys is required"))
		return
	}
	if len(q.ServerKeys) > MaxNotaryServers {
		jsonhttp.Error(w, r, matrix.BadJSON("At most %d servers may be queried at once", MaxNotaryServers))
		return
	}
	now := a.Now().UnixMilli()
	type job struct {
		server string
		min    int64
	}
	var jobs []job
	for server, ids := range q.ServerKeys {
		if !matrix.ValidServerName(server) || !a.allowed(server) {
			continue
		}
		min := now
		for _, c := range ids {
			if c.MinimumValidUntilTS != nil && *c.MinimumValidUntilTS > min {
				min = *c.MinimumValidUntilTS
			}
		}
		jobs = append(jobs, job{server, min})
	}
	results := make([]json.RawMessage, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, notaryParallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = a.notaryResponse(r, j.server, j.min)
		}()
	}
	wg.Wait()
	keys := []json.RawMessage{}
	for i, res := range results {
		if errs[i] != nil && !errors.Is(errs[i], keyring.ErrNotAllowed) {
			jsonhttp.Error(w, r, errs[i])
			return
		}
		if res != nil {
			keys = append(keys, res)
		}
	}
	jsonhttp.OK(w, map[string]any{"server_keys": keys})
}

// notaryResponse is server's countersigned key response, or nil. Our own
// keys are served from memory: the response we publish is signed by us
// already, which is all a notary adds.
func (a *API) notaryResponse(r *http.Request, server string, min int64) (json.RawMessage, error) {
	if server == a.ServerName {
		return a.keyResponse()
	}
	if a.Keyring == nil {
		return nil, nil
	}
	resp, err := a.Keyring.NotaryResponse(r.Context(), server, min)
	if errors.Is(err, keyring.ErrNotAllowed) {
		return nil, matrix.Forbidden("Federation denied with %s", server)
	}
	return resp, err
}
