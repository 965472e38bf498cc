// Package e2eetest holds end-to-end encryption tests in which real clients —
// mautrix-go's crypto machine with the pure-Go Olm implementation — talk to a
// running Conclave. Build and run them with the goolm tag:
//
//	go test -tags goolm ./internal/e2eetest
//
// The package has no non-test code.
package e2eetest
