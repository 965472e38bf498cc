package homeserver

import (
	"crypto/x509"

	"conclave/internal/outbound"
	"conclave/internal/sso"
)

// setupSSO builds single sign-on when oidc_issuer is set, after the
// profiles and e-mail addresses it uses. The provider is the operator's
// choice (often on the state's network), so private addresses are allowed;
// TLS trusts the system roots and tls_ca_cert, as every outbound
// connection does.
func (hs *Homeserver) setupSSO() {
	cfg := hs.Config
	if cfg.OIDCIssuer == "" {
		return
	}
	var cas []*x509.Certificate
	if hs.TLS != nil {
		cas = hs.TLS.CACerts
	}
	out := outbound.New(outbound.Config{ExtraCAs: cas, AllowPrivate: true})
	s := sso.New(sso.Config{Issuer: cfg.OIDCIssuer, ClientID: cfg.OIDCClientID, ClientSecret: cfg.OIDCClientSecret,
		BaseURL: cfg.PublicBaseURL, IdPName: cfg.OIDCProviderName, ServerName: cfg.ServerName, HTTP: out.HTTP,
		TrustUnverifiedEmail: !cfg.OIDCRequireEmailVerified})
	s.Store, s.Accounts, s.Directory, s.Profiles = hs.Store, hs.Accounts, hs.Threepids, hs.Profiles
	if hs.Log != nil {
		s.Log = hs.Log
	}
	hs.SSO = s
	// UIA sessions offering m.login.sso are shared through the database.
	hs.Accounts.SSOSessions = hs.Store
}
