// Package server assembles Conclave's HTTP surface: the middleware every
// request passes (request IDs, panic recovery, CORS, logging), the listeners
// and graceful shutdown. Handlers live in clientapi and friends.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
)

// Wrap applies the standard middleware to h, outermost first: request ID,
// panic recovery, CORS, access log.
func Wrap(h http.Handler, log *slog.Logger) http.Handler {
	return requestID(recoverPanics(cors(accessLog(h, log)), log))
}

func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b [8]byte
		rand.Read(b[:])
		w.Header().Set("X-Request-Id", hex.EncodeToString(b[:]))
		next.ServeHTTP(w, r)
	})
}

// recoverPanics turns a panic into M_UNKNOWN 500 and logs the stack: the
// server keeps serving, and the log says which request broke what.
func recoverPanics(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				log.Error("panic", "panic", p, "method", r.Method, "path", r.URL.Path, "request_id", w.Header().Get("X-Request-Id"), "stack", string(debug.Stack()))
				jsonhttp.Write(w, http.StatusInternalServerError, map[string]string{"errcode": matrix.ErrUnknown, "error": "Internal server error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// cors answers every request with the headers the Client-Server API requires
// ("Web Browser Clients") and short-circuits OPTIONS preflights.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization")
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Status is the status written so far (200 until WriteHeader): inner
// middleware (metrics) reads it instead of wrapping the writer again.
func (s *statusWriter) Status() int { return s.status }

func accessLog(next http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		level := levelFor(sw.status)
		if errors.Is(r.Context().Err(), context.Canceled) {
			// The client went away (a reload abandoning its /sync): nobody
			// reads the answer, and nothing is wrong with the server.
			level = slog.LevelDebug
		}
		if log.Enabled(r.Context(), level) {
			log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "ms", time.Since(start).Milliseconds(), "request_id", w.Header().Get("X-Request-Id"))
		}
	})
}

func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelDebug
}

// NotFound answers unknown endpoints with M_UNRECOGNIZED, as the spec asks
// (404 for an unknown path, 405 for a known path with the wrong method).
func NotFound(w http.ResponseWriter, r *http.Request) {
	jsonhttp.Error(w, r, matrix.Unrecognized("Unrecognized request"))
}
