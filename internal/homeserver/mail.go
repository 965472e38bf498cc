package homeserver

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/url"
	"strings"

	"conclave/internal/accounts"
	"conclave/internal/emaildomains"
	"conclave/internal/fedclient"
	"conclave/internal/federationapi"
	"conclave/internal/mail"
	"conclave/internal/outbound"
	"conclave/internal/store"
	"conclave/internal/threepid"
)

// setupMail loads the circle's e-mail domain map (email_domains), builds the
// SMTP sender (smtp_url) and the e-mail address service, after
// setupFederation so that tls_ca_cert and the federation client are known.
// The mail server is the operator's own, often on a private network, so the
// outbound layer's dialer here allows private addresses; TLS trusts the
// system roots and tls_ca_cert, as every outbound connection does.
func (hs *Homeserver) setupMail() error {
	cfg := hs.Config
	if cfg.EmailDomains != "" {
		m, err := emaildomains.Load(cfg.EmailDomains)
		if err != nil {
			return err
		}
		hs.EmailDomains = m
	}
	if cfg.SMTPURL != "" {
		var cas []*x509.Certificate
		if hs.TLS != nil {
			cas = hs.TLS.CACerts
		}
		out := outbound.New(outbound.Config{ExtraCAs: cas, AllowPrivate: true})
		s, err := mail.NewSMTP(mail.SMTPConfig{URL: cfg.SMTPURL, From: cfg.SMTPFrom, Dial: out.DialContext, TLS: out.TLSConfig})
		if err != nil {
			return err
		}
		hs.Mailer = s
	}
	hs.Threepids = &threepid.Service{ServerName: cfg.ServerName, Store: hs.Store, Domains: hs.EmailDomains, Mailer: hs.Mailer,
		BaseURL: strings.TrimRight(cfg.PublicBaseURL, "/"), Log: hs.Log}
	if hs.FedClient != nil {
		f := fedThreepids{hs.FedClient}
		hs.Threepids.Remote, hs.Threepids.CheckOpenID = f, f.OpenIDUser
	}
	hs.Threepids.Key = hs.SigningKey
	hs.Accounts.CheckEmail = func(ctx context.Context, purpose string, creds accounts.ThreepidCreds) (string, error) {
		return hs.Threepids.Validated(ctx, threepid.UIAPurpose(purpose), creds.SID, creds.ClientSecret)
	}
	hs.Accounts.EmailOwner = hs.Threepids.Owner
	return nil
}

// fedThreepids asks other servers of the circle (federationapi/threepid.go).
type fedThreepids struct{ c *fedclient.Client }

func (f fedThreepids) Info(ctx context.Context, server, address string) (string, bool, error) {
	var out struct {
		UserID  string `json:"user_id"`
		Invited bool   `json:"invited"`
	}
	err := f.c.Do(ctx, http.MethodGet, server, federationapi.ThreepidPrefix+"/info", url.Values{"medium": {"email"}, "address": {address}}, nil, &out)
	return out.UserID, out.Invited, err
}

func (f fedThreepids) Lookup(ctx context.Context, server, pepper string, hashes []string) (map[string]string, error) {
	var out struct {
		Mappings map[string]string `json:"mappings"`
	}
	err := f.c.Do(ctx, http.MethodPost, server, federationapi.ThreepidPrefix+"/lookup", nil, map[string]any{"pepper": pepper, "hashes": hashes}, &out)
	return out.Mappings, err
}

func (f fedThreepids) Invite(ctx context.Context, server string, inv store.ThreepidInvite) error {
	return f.c.Do(ctx, http.MethodPut, server, federationapi.ThreepidPrefix+"/invite", nil,
		map[string]string{"medium": inv.Medium, "address": inv.Address, "room_id": inv.RoomID, "sender": inv.Sender}, nil)
}

// OpenIDUser asks server whose user an OpenID token proves.
func (f fedThreepids) OpenIDUser(ctx context.Context, server, token string) (string, error) {
	var out struct {
		Sub string `json:"sub"`
	}
	err := f.c.Do(ctx, http.MethodGet, server, "/_matrix/federation/v1/openid/userinfo", url.Values{"access_token": {token}}, nil, &out)
	return out.Sub, err
}

func (f fedThreepids) Bound(ctx context.Context, server, address, userID string) error {
	return f.c.Do(ctx, http.MethodPut, server, federationapi.ThreepidPrefix+"/bound", nil,
		map[string]string{"medium": "email", "address": address, "user_id": userID}, nil)
}
