// Package jsonhttp reads JSON request bodies and writes JSON responses and
// Matrix errors. It is the one place where "bad input gets a clear error"
// is enforced for bodies: size limits, M_NOT_JSON, M_BAD_JSON, depth limits.
package jsonhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"unicode/utf8"

	"conclave/internal/matrix"
)

// MaxDepth bounds the nesting of request JSON; deeper bodies are M_BAD_JSON.
const MaxDepth = 64

// ReadBody reads the whole body, refusing more than limit bytes with M_TOO_LARGE.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, matrix.TooLarge("Request body is larger than %d bytes", limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrNotJSON, "Could not read request body")
	}
	if int64(len(body)) > limit {
		return nil, matrix.TooLarge("Request body is larger than %d bytes", limit)
	}
	return body, nil
}

// Decode parses body into v. Non-JSON (or not an object when v is a struct or
// map) is M_NOT_JSON; JSON of the wrong shape is M_BAD_JSON.
func Decode(body []byte, v any) error {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return matrix.NotJSON("Request body is empty, expected a JSON object")
	}
	if !utf8.Valid(body) || !json.Valid(body) {
		return matrix.NotJSON("Request body is not valid JSON")
	}
	if body[0] != '{' {
		return matrix.BadJSON("Request body must be a JSON object")
	}
	if depth(body) > MaxDepth {
		return matrix.BadJSON("JSON nesting is deeper than %d", MaxDepth)
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return matrix.BadJSON("Field %q must be of type %s", te.Field, jsonKind(te.Type.Kind().String()))
		}
		return matrix.BadJSON("Request body has the wrong shape: %s", err.Error())
	}
	return nil
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "slice":
		return "array"
	case "map", "struct":
		return "object"
	}
	return k
}

// Read reads and decodes the request body into v with the given size limit.
func Read(r *http.Request, limit int64, v any) error {
	body, err := ReadBody(r, limit)
	if err != nil {
		return err
	}
	return Decode(body, v)
}

// ReadObject reads the body and checks it is a JSON object, returning the raw
// bytes (for event content, account data: stored as sent).
func ReadObject(r *http.Request, limit int64) (json.RawMessage, error) {
	body, err := ReadBody(r, limit)
	if err != nil {
		return nil, err
	}
	var m map[string]json.RawMessage
	if err := Decode(body, &m); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(body), nil
}

// depth returns the maximum nesting depth of valid JSON.
func depth(b []byte) int {
	d, max := 0, 0
	inStr, esc := false, false
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			d++
			if d > max {
				max = d
			}
		case '}', ']':
			d--
		}
	}
	return max
}

// Write writes v as JSON with the status.
func Write(w http.ResponseWriter, status int, v any) {
	var b []byte
	switch x := v.(type) {
	case json.RawMessage:
		b = x
	case []byte:
		b = x
	default:
		var err error
		b, err = json.Marshal(v)
		if err != nil {
			slog.Error("encode response", "err", err)
			status = http.StatusInternalServerError
			b = []byte(`{"errcode":"M_UNKNOWN","error":"Internal server error"}`)
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// OK writes v with status 200.
func OK(w http.ResponseWriter, v any) { Write(w, http.StatusOK, v) }

// Empty writes {} with status 200.
func Empty(w http.ResponseWriter) { Write(w, http.StatusOK, json.RawMessage("{}")) }

// Error writes err: a *matrix.Error as itself, anything else as M_UNKNOWN 500
// after logging it with the request ID (a 500 is always a bug).
func Error(w http.ResponseWriter, r *http.Request, err error) {
	me, ok := matrix.AsError(err)
	if !ok && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// The request's deadline passed (server.WithDeadline) or the client
		// went away: an overload, not a bug. The client may retry.
		level := slog.LevelWarn
		if errors.Is(r.Context().Err(), context.Canceled) {
			level = slog.LevelDebug // the client went away, nothing to fix here
		}
		slog.Log(r.Context(), level, "request abandoned", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"))
		me, ok = matrix.Errorf(http.StatusServiceUnavailable, matrix.ErrUnknown, "Request timed out"), true
	}
	if !ok {
		slog.ErrorContext(r.Context(), "internal error", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"))
		me = matrix.Errorf(http.StatusInternalServerError, matrix.ErrUnknown, "Internal server error")
	}
	body := make(map[string]any, 2+len(me.Extra))
	for k, v := range me.Extra {
		body[k] = v
	}
	body["errcode"] = me.Code
	body["error"] = me.Msg
	if me.Code == matrix.ErrLimitExceeded {
		if ms, ok := me.Extra["retry_after_ms"].(int64); ok {
			w.Header().Set("Retry-After", strconv.FormatInt((ms+999)/1000, 10))
		}
	}
	Write(w, me.Status, body)
}
