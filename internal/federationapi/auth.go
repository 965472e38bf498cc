package federationapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"conclave/internal/jsonhttp"
	"conclave/internal/keyring"
	"conclave/internal/matrix"
	"conclave/internal/xmatrix"
)

// MaxRequestBody bounds the body of an authenticated federation request: a
// /send transaction holds at most 50 PDUs of 64 KiB and 100 EDUs.
const MaxRequestBody = 16 << 20

type originKey struct{}

// Origin is the server that signed the request, as authenticated by
// HandleSigned; "" outside such a handler.
func Origin(ctx context.Context) string {
	s, _ := ctx.Value(originKey{}).(string)
	return s
}

// HandleSigned registers h for pattern behind request authentication: every
// /_matrix/federation/* endpoint but version (and openid/userinfo, which
// takes an access token) is registered this way. The handler runs only for
// a request signed by its origin (Origin(r.Context())), and reads the body
// as usual (already read once, bounded, by the check).
func (a *API) HandleSigned(mux Mux, pattern string, h func(http.ResponseWriter, *http.Request)) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		origin, body, err := a.authenticate(r)
		if err != nil {
			jsonhttp.Error(w, r, err)
			return
		}
		if a.Heard != nil {
			a.Heard(origin)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h(w, r.WithContext(context.WithValue(r.Context(), originKey{}, origin)))
	})
}

func unauthorized(msg string) error {
	return matrix.Errorf(http.StatusUnauthorized, matrix.ErrUnauthorized, "%s", msg)
}

// authenticate checks the X-Matrix signature of r (Server-Server API,
// "Request Authentication") and returns the origin and the body.
//
// Each X-Matrix header carries one signature of the same JSON; several
// headers are several signatures (the spec's example signs with every key
// and sends the first). As Synapse does (federation/transport/server/
// _base.py, authenticate_request), the signatures of all headers are
// checked together: those by keys we cannot get are skipped, every other one
// must verify, and at least one must (MSC4029: "a minimum of one key MUST
// sign the request. Multiple keys MAY be provided, and MUST individually be
// valid"). Headers naming different origins are refused.
//
// Errors: no X-Matrix header, a malformed one, a destination that is not
// this server ("the receiving server must deny the request with an HTTP
// status code 401 Unauthorized"), an unknown key or a bad signature: 401
// M_UNAUTHORIZED. An origin outside the allow list: 403 M_FORBIDDEN, before
// any key is fetched.
func (a *API) authenticate(r *http.Request) (string, []byte, error) {
	var origin string
	sigs := map[string]string{}
	for _, v := range r.Header.Values("Authorization") {
		if len(v) < len(xmatrix.Scheme) || !strings.EqualFold(v[:len(xmatrix.Scheme)], xmatrix.Scheme) {
			continue // another scheme
		}
		x, err := xmatrix.Parse(v)
		if err != nil {
			return "", nil, unauthorized("Malformed X-Matrix Authorization header: " + err.Error())
		}
		// A missing destination is accepted from servers before spec v1.3.
		if x.Destination != "" && x.Destination != a.ServerName {
			return "", nil, unauthorized("Destination mismatch in Authorization header")
		}
		if origin != "" && x.Origin != origin {
			return "", nil, unauthorized("Authorization headers name different origins")
		}
		origin = x.Origin
		sigs[x.Key] = x.Sig
	}
	if origin == "" {
		return "", nil, unauthorized("Missing X-Matrix Authorization header")
	}
	if !a.allowed(origin) {
		return "", nil, matrix.Forbidden("Federation denied with %s", origin)
	}
	body, err := jsonhttp.ReadBody(r, MaxRequestBody)
	if err != nil {
		return "", nil, err
	}
	// "content": the JSON-parsed request body, when there is one.
	var content []byte
	if len(bytes.TrimSpace(body)) > 0 {
		content = body
	}
	unsigned, err := xmatrix.RequestJSON(r.Method, r.RequestURI, origin, a.ServerName, content)
	if err != nil {
		return "", nil, matrix.NotJSON("Request body is not JSON")
	}
	obj, err := withSignatures(unsigned, origin, sigs)
	if err != nil {
		return "", nil, unauthorized("Malformed X-Matrix Authorization header")
	}
	if a.Keyring == nil {
		return "", nil, unauthorized("No keyring to check signatures with")
	}
	ids := make([]string, 0, len(sigs))
	for id := range sigs {
		ids = append(ids, id)
	}
	switch err := a.Keyring.VerifySigned(r.Context(), origin, obj, ids, a.Now().UnixMilli()); {
	case err == nil:
		return origin, body, nil
	case errors.Is(err, keyring.ErrNotAllowed):
		return "", nil, matrix.Forbidden("Federation denied with %s", origin)
	case errors.Is(err, keyring.ErrNoKey), errors.Is(err, keyring.ErrBadSignature):
		return "", nil, unauthorized("Request signature of " + origin + " not verified: " + err.Error())
	default:
		return "", nil, err
	}
}

// allowed: the closed circle (keyring.Config.Allowed), everyone without one.
func (a *API) allowed(server string) bool {
	return a.Keyring == nil || a.Keyring.Allowed(server)
}

// withSignatures adds "signatures": {origin: sigs} to the JSON object obj.
func withSignatures(obj []byte, origin string, sigs map[string]string) ([]byte, error) {
	b, err := json.Marshal(map[string]map[string]string{origin: sigs})
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(obj)+len(b)+16)
	out = append(out, obj[:len(obj)-1]...)
	out = append(out, `,"signatures":`...)
	out = append(out, b...)
	return append(out, '}'), nil
}
