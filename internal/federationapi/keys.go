package federationapi

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"conclave/internal/event"
	"conclave/internal/jsonhttp"
)

// KeyValidity is how far ahead valid_until_ts lies. The spec (Server-Server
// API, "Publishing Keys") has remote servers use the lesser of
// valid_until_ts and 7 days from when they fetched it, so a longer value
// would gain nothing.
const KeyValidity = 7 * 24 * time.Hour

func (a *API) registerKeys(mux Mux) {
	mux.HandleFunc("GET /_matrix/key/v2/server", a.serverKeys)
	mux.HandleFunc("GET /_matrix/key/v2/query/{serverName}", a.notaryGet)
	mux.HandleFunc("POST /_matrix/key/v2/query", a.notaryPost)
}

// keyCache holds the signed key response for one valid_until_ts: it is
// rounded down to the hour, so the response changes (and is signed again)
// at most hourly and identical requests get identical bytes.
type keyCache struct {
	mu         sync.Mutex
	validUntil int64
	body       []byte
}

// serverKeys: "GET /_matrix/key/v2/server", the server's own published
// signing keys, signed with that key (appendix "Signing JSON").
func (a *API) serverKeys(w http.ResponseWriter, r *http.Request) {
	body, err := a.keyResponse()
	if err != nil {
		jsonhttp.Error(w, r, err)
		return
	}
	jsonhttp.Write(w, http.StatusOK, json.RawMessage(body))
}

func (a *API) keyResponse() ([]byte, error) {
	until := a.Now().Add(KeyValidity).Truncate(time.Hour).UnixMilli()
	a.keys.mu.Lock()
	defer a.keys.mu.Unlock()
	if a.keys.body != nil && a.keys.validUntil == until {
		return a.keys.body, nil
	}
	// Keys retired by `conclave admin rotate-key`, "only valid for
	// signing events" (old_verify_keys, with expired_ts).
	old := map[string]any{}
	if a.Keyring != nil {
		for _, k := range a.Keyring.OwnOldKeys() {
			old[k.KeyID] = map[string]any{"key": k.PublicKey, "expired_ts": k.ExpiredTS}
		}
	}
	unsigned, err := json.Marshal(map[string]any{
		"server_name":     a.ServerName,
		"valid_until_ts":  until,
		"verify_keys":     map[string]any{a.SigningKey.ID: map[string]string{"key": a.SigningKey.PublicKeyBase64()}},
		"old_verify_keys": old,
	})
	if err != nil {
		return nil, err
	}
	signed, err := event.SignJSON(unsigned, a.ServerName, a.SigningKey)
	if err != nil {
		return nil, err
	}
	a.keys.validUntil, a.keys.body = until, signed
	return signed, nil
}
