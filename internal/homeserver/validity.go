package homeserver

import (
	"context"
	"slices"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/validity"
)

// renewalMailInterval is how often due renewal mails are looked for.
const renewalMailInterval = time.Hour

// setupValidity builds account expiry when external_account_validity is
// set on the externals' server (one named in external_servers, or the
// catch-all server of the e-mail domain map): there every local account is
// an external's and expires. Elsewhere nobody's does.
func (hs *Homeserver) setupValidity() {
	cfg := hs.Config
	if cfg.ExternalAccountValidity.Duration <= 0 {
		return
	}
	external := slices.Contains(cfg.ExternalServers, cfg.ServerName) ||
		(hs.EmailDomains != nil && hs.EmailDomains.ExternalServer() == cfg.ServerName)
	if !external {
		return
	}
	v := validity.New(hs.Store, cfg.ExternalAccountValidity.Duration, cfg.AccountRenewalNotice.Duration, func(userID string) bool {
		return matrix.ServerOf(userID) == cfg.ServerName
	})
	v.Addresses, v.BaseURL, v.Log = hs.Threepids, cfg.PublicBaseURL, hs.Log
	if hs.Mailer != nil {
		v.Mailer = hs.Mailer
	}
	hs.Validity = v
	hs.Accounts.Expiry = v.Check
}

// runValidity sends renewal mails until ctx ends; the returned channel is
// closed when it has stopped.
func (hs *Homeserver) runValidity(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if hs.Validity != nil {
			hs.Validity.Run(ctx, renewalMailInterval)
		}
	}()
	return done
}
