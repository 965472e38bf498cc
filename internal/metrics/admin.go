package metrics

import (
	"net/http"
	"net/http/pprof"

	"conclave/internal/server"
)

// AdminHandler is what the admin listener serves: GET /metrics and, when
// withPprof, the Go profiler under /debug/pprof/. Anything else is the
// usual M_UNRECOGNIZED.
//
// The profiler handlers are registered here, on this mux only. (Importing
// net/http/pprof also registers them on http.DefaultServeMux, which no
// Conclave listener serves.) /debug/pprof/cmdline is left out: the command
// line may carry secrets such as --registration-shared-secret.
//
// No CORS headers are sent, unlike the client API: a web page in the
// operator's browser must not be able to read metrics or profiles from a
// loopback admin listener.
func (m *Metrics) AdminHandler(withPprof bool) http.Handler {
	mux := server.NewMux()
	mux.Handle("GET /metrics", m.Handler())
	if withPprof {
		// Index serves /debug/pprof/ and every named profile below it
		// (heap, goroutine, allocs, block, mutex, threadcreate).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	}
	return mux
}
