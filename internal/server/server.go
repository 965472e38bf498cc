package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"conclave/internal/jsonhttp"
	"conclave/internal/matrix"
)

// Mux is http.ServeMux with Matrix-shaped answers for unknown endpoints:
// M_UNRECOGNIZED with 404 for unknown paths and 405 for a known path asked
// with a method it does not serve.
type Mux struct {
	*http.ServeMux
	patterns []string
	// elsewhere: path prefixes served by another listener's mux, whose
	// endpoints this listener still knows (see KnowElsewhere).
	elsewhere []elsewhere
	// fallback serves GET and HEAD requests for paths outside the Matrix
	// namespaces that no pattern matched (the web client); nil: none.
	fallback http.Handler
}

type elsewhere struct {
	prefix string
	mux    *Mux
}

// NewMux returns a Mux whose fallback answers M_UNRECOGNIZED.
func NewMux() *Mux {
	m := &Mux{ServeMux: http.NewServeMux()}
	m.ServeMux.HandleFunc("/", m.unrecognized)
	return m
}

// Handle registers h for pattern and remembers the pattern.
func (m *Mux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

// HandleFunc registers h for pattern and remembers the pattern.
func (m *Mux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// Patterns lists the registered patterns ("METHOD /path/{param}"), in
// registration order: the hostile-input tests walk every endpoint with it.
func (m *Mux) Patterns() []string { return append([]string(nil), m.patterns...) }

// KnowElsewhere makes the endpoints other serves under prefix known here
// without serving them: the client listener knows the federation API's
// paths (served on the federation listener) so that a known path asked with
// the wrong method is 405, not 404. Client-Server API, "Unrecognised
// requests": 405 M_UNRECOGNIZED for a known endpoint with an unsupported
// method, 404 M_UNRECOGNIZED for an unknown one.
func (m *Mux) KnowElsewhere(prefix string, other *Mux) {
	m.elsewhere = append(m.elsewhere, elsewhere{prefix: prefix, mux: other})
}

// Fallback makes h answer GET and HEAD requests that no pattern matched,
// except under /_matrix, /.well-known and /_synapse, which stay Matrix-shaped
// (M_UNRECOGNIZED): the web client is served at / without shadowing any API.
func (m *Mux) Fallback(h http.Handler) { m.fallback = h }

// apiPrefixes are the namespaces the fallback never answers.
var apiPrefixes = []string{"/_matrix", "/.well-known", "/_synapse"}

func (m *Mux) unrecognized(w http.ResponseWriter, r *http.Request) {
	if m.fallback != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !underAPI(r.URL.Path) {
		m.fallback.ServeHTTP(w, r)
		return
	}
	known := m
	for _, e := range m.elsewhere {
		if strings.HasPrefix(r.URL.Path, e.prefix) {
			known = e.mux
			break
		}
	}
	if known != m {
		if _, pattern := known.Handler(r); pattern != "/" && pattern != "" {
			// Served, with this method, by the other listener only.
			NotFound(w, r)
			return
		}
	}
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		if method == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = method
		if _, pattern := known.Handler(probe); pattern != "/" && pattern != "" {
			jsonhttp.Error(w, r, matrix.Errorf(http.StatusMethodNotAllowed, matrix.ErrUnrecognized, "Method not allowed"))
			return
		}
	}
	NotFound(w, r)
}

func underAPI(p string) bool {
	for _, prefix := range apiPrefixes {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// Listener is one HTTP listener: an address, a handler, optional TLS.
type Listener struct {
	Addr    string
	Handler http.Handler
	TLS     *tls.Config
	// Bound is called with the actual address once listening (":0" picks a port).
	Bound func(net.Addr)
	// MaxConns bounds the connections open at once (0: no bound); further
	// clients wait in the kernel's accept queue.
	MaxConns int
	// ReadHeaderTimeout cuts off clients that send headers too slowly
	// (slowloris); 0 means 10s.
	ReadHeaderTimeout time.Duration
	// Listener, when set, is served instead of listening on Addr: the
	// caller bound it already (a test that must know the port first).
	Listener net.Listener
}

// Serve runs the listeners until ctx is cancelled, then shuts them down
// gracefully, waiting up to grace for in-flight requests.
func Serve(ctx context.Context, log *slog.Logger, grace time.Duration, listeners ...Listener) error {
	servers := make([]*http.Server, 0, len(listeners))
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		ln, err := l.Listener, error(nil)
		if ln == nil {
			ln, err = net.Listen("tcp", l.Addr)
		}
		if err != nil {
			for _, s := range servers {
				s.Close()
			}
			return err
		}
		if l.MaxConns > 0 {
			ln = LimitListener(ln, l.MaxConns)
		}
		if l.TLS != nil {
			ln = tls.NewListener(ln, l.TLS)
		}
		rht := l.ReadHeaderTimeout
		if rht <= 0 {
			rht = 10 * time.Second
		}
		if l.Bound != nil {
			l.Bound(ln.Addr())
		}
		srv := &http.Server{
			Handler: l.Handler,
			// Slow clients are cut off: headers must arrive promptly and idle
			// keep-alive connections do not linger. Bodies are bounded per
			// endpoint; long-polls set their own deadlines.
			ReadHeaderTimeout: rht,
			ReadTimeout:       60 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
			BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		}
		servers = append(servers, srv)
		log.Info("listening", "addr", ln.Addr().String(), "tls", l.TLS != nil)
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for _, s := range servers {
		if e := s.Shutdown(shutCtx); e != nil {
			s.Close()
		}
	}
	return err
}
