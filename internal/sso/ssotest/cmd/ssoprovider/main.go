// Command ssoprovider runs ssotest's OpenID Connect provider (the real
// zitadel/oidc provider of the Go SSO tests) as a process, for tests that
// are not written in Go: the web client's browser test (web/test/sso.test.mjs)
// builds it with `go build` and spawns it. Tests only; never shipped.
//
//	ssoprovider -redirect-uri http://127.0.0.1:8008/_synapse/client/oidc/callback \
//	    -subject alice-sub -email alice@example.org -name Alice
//
// It listens on a loopback port (-listen, default any free one), prints one
// JSON line on stdout, {"issuer":…,"client_id":…,"client_secret":…}, for
// conclave's --oidc-issuer, --oidc-client-id and --oidc-client-secret, and
// signs in the user the flags give at every login, without a form. It
// stops on SIGINT or SIGTERM, or when its standard input closes (so it dies
// with the test that spawned it through a pipe).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"conclave/internal/sso/ssotest"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "loopback address to listen on")
	redirect := flag.String("redirect-uri", "", "the one redirect URI the client may use: conclave's public_base_url + /_synapse/client/oidc/callback (required)")
	subject := flag.String("subject", "user-1", "the signed-in user's subject (sub claim)")
	email := flag.String("email", "", "the signed-in user's e-mail (email claim; verified)")
	name := flag.String("name", "", "the signed-in user's name (name claim)")
	flag.Parse()
	if *redirect == "" {
		fmt.Fprintln(os.Stderr, "ssoprovider: -redirect-uri is required")
		os.Exit(2)
	}
	p, err := ssotest.Listen(*listen, *redirect)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ssoprovider:", err)
		os.Exit(1)
	}
	defer p.Close()
	p.SignIn(ssotest.User{Subject: *subject, Email: *email, EmailVerified: *email != "", Name: *name})
	line, _ := json.Marshal(map[string]string{"issuer": p.Issuer, "client_id": p.ClientID, "client_secret": p.ClientSecret})
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	stdinClosed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stop:
	case <-stdinClosed:
	}
}
