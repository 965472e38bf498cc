package homeserver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"conclave/internal/fedclient"
	"conclave/internal/federation"
	"conclave/internal/federationapi"
	"conclave/internal/fedsender"
	"conclave/internal/keys"
	"conclave/internal/matrix"
	"conclave/internal/server"
	"conclave/internal/tlsutil"
)

// Version is reported by the federation version endpoint; cmd/conclave
// sets it from its build-time version.
var Version = "dev"

// setupFederation loads the TLS material (when any is configured) and
// builds the federation handler (when federation_listen is set).
func (hs *Homeserver) setupFederation() error {
	cfg := hs.Config
	files := tlsutil.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CACert: cfg.TLSCACert, CAKey: cfg.TLSCAKey}
	if cfg.FederationListen != "" && !files.Configured() {
		return fmt.Errorf("config: federation_listen: %s needs TLS: set tls_ca_cert and tls_ca_key, or tls_cert and tls_key", cfg.FederationListen)
	}
	if files.Configured() {
		b, err := tlsutil.Load(cfg.ServerName, files, time.Now())
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		hs.TLS = b
	}
	if cfg.FederationListen != "" {
		// Outbound federation trusts the system roots and the operator's
		// CA (tls_ca_cert), and keeps to federation_allow.
		var cas []*x509.Certificate
		if hs.TLS != nil {
			cas = hs.TLS.CACerts
		}
		hs.FedClient = fedclient.New(fedclient.Options{ServerName: cfg.ServerName, Key: hs.SigningKey, Allow: cfg.FederationAllow,
			AllowPrivate: cfg.FederationAllowPrivate, ExtraCAs: cas})
	}
	return nil
}

// setupFederationAPI builds the federation service and the federation
// listener's handler once the room service exists (federation_listen set).
func (hs *Homeserver) setupFederationAPI() {
	if hs.Config.FederationListen == "" {
		return
	}
	hs.FedSender = fedsender.New(hs.Store, federation.Transport{Client: hs.FedClient}, fedsender.Options{Origin: hs.Config.ServerName, Log: hs.Log})
	hs.Federation = &federation.Service{ServerName: hs.Config.ServerName, Key: hs.SigningKey, Rooms: hs.Rooms,
		Client: hs.FedClient, Keys: hs.Keyring, Log: hs.Log, Outbox: hs.FedSender, Txns: hs.Store}
	hs.Rooms.Outgoing = hs.Federation.Outgoing
	hs.Rooms.FedCommitted = hs.Federation.Committed
	hs.Rooms.InviteRemote = hs.Federation.Invite
	hs.Rooms.RemoteHierarchy = hs.Federation.Hierarchy
	hs.Federation.Sinks = federation.EDUSinks{Typing: hs.Typing.Set, Receipt: hs.Receipts.Remote, Presence: hs.remotePresence}
	local := func(userID string) bool { return matrix.ServerOf(userID) == hs.Config.ServerName }
	sendPresence := func(userID string) {
		ctx := context.Background()
		var servers []string
		for _, u := range hs.coMembers(ctx, userID) {
			servers = append(servers, matrix.ServerOf(u))
		}
		st := hs.Presence.Get(userID)
		p := federation.Presence{UserID: userID, Presence: st.Presence, StatusMsg: st.StatusMsg}
		if st.LastActiveAgo != nil {
			p.LastActiveAgo = *st.LastActiveAgo
		}
		if st.CurrentlyActive != nil {
			p.CurrentlyActive = *st.CurrentlyActive
		}
		hs.Federation.SendPresence(ctx, servers, p)
	}
	hs.Presence.Sent = func(userID string) {
		if local(userID) {
			hs.presenceLater(func() { sendPresence(userID) })
		}
	}
	hs.Typing.Sent = func(ctx context.Context, roomID, userID string, typing bool) {
		if local(userID) {
			hs.Federation.SendTyping(ctx, roomID, userID, typing)
		}
	}
	hs.Receipts.Sent = func(ctx context.Context, roomID, userID, eventID, threadID string, ts int64) {
		if local(userID) {
			hs.Federation.SendReceipt(ctx, roomID, userID, eventID, threadID, ts)
		}
	}
	hs.Profiles.Remote = hs.Federation.Profile
	hs.wireE2EEFederation()
	mux := server.NewMux()
	fedAPI := federationapi.New(federationapi.Deps{ServerName: hs.Config.ServerName, SigningKey: hs.SigningKey, Version: Version, Keyring: hs.Keyring,
		Rooms: hs.Rooms, Federation: hs.Federation, Store: hs.Store, Heard: hs.FedSender.Wake, EDUs: hs.Federation.HandleEDU, Keys: hs.Keys})
	fedAPI.Register(mux)
	fedAPI.RegisterThreepids(mux, hs.Threepids)
	// Media: served to other servers, and fetched from them for our clients.
	fedAPI.RegisterMedia(mux, hs.Media)
	hs.Media.SetFetcher(hs.Federation)
	hs.FederationHandler = server.Wrap(mux, hs.Log)
	hs.federationMux = mux
}

// listeners are the client listener (TLS only when tls_cert is set: the
// usual deployment terminates TLS in a reverse proxy) and, when
// configured, the federation listener (always TLS). Ready closes once all
// are bound.
func (hs *Homeserver) listeners() []server.Listener {
	client := server.Listener{Addr: hs.Config.Listen, Handler: hs.Handler, MaxConns: hs.Config.MaxConnections, ReadHeaderTimeout: hs.Config.ReadHeaderTimeout.Duration, Bound: func(a net.Addr) {
		hs.mu.Lock()
		hs.clientAddr = a
		hs.mu.Unlock()
	}}
	if hs.Config.TLSCert != "" {
		client.TLS = hs.TLS.Server.Clone()
	}
	ls := []server.Listener{client}
	if hs.FederationHandler != nil {
		ls = append(ls, server.Listener{Addr: hs.Config.FederationListen, Listener: hs.federationListener, Handler: hs.FederationHandler, TLS: hs.TLS.Server.Clone(), Bound: func(a net.Addr) {
			hs.mu.Lock()
			hs.federationAddr = a
			hs.mu.Unlock()
		}})
	}
	ls = append(ls, hs.adminListeners()...)
	last := &ls[len(ls)-1]
	bound := last.Bound
	last.Bound = func(a net.Addr) {
		bound(a)
		close(hs.ready)
	}
	return ls
}

// FederationAddr is the bound federation listener address (after Ready),
// nil when federation_listen is not set.
func (hs *Homeserver) FederationAddr() net.Addr {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.federationAddr
}

// fedKeys fetches other servers' keys for the keyring through hs.FedClient.
type fedKeys struct{ hs *Homeserver }

func (f fedKeys) ServerKeys(ctx context.Context, server string) ([]byte, error) {
	if f.hs.FedClient == nil {
		return nil, errors.New("federation is off (no federation_listen)")
	}
	return f.hs.FedClient.GetServerKeys(ctx, server)
}

// NotaryKeys asks a trusted key server (keyring.NotaryFetcher).
func (f fedKeys) NotaryKeys(ctx context.Context, notary, server, keyID string, minValidUntil int64) ([]byte, error) {
	if f.hs.FedClient == nil {
		return nil, errors.New("federation is off (no federation_listen)")
	}
	return f.hs.FedClient.QueryServerKeys(ctx, notary, server, keyID, minValidUntil)
}

// remotePresence takes another server's user's presence (an m.presence EDU
// from that server), for a user who shares a room with a user of this
// server (Server-Server API, "Presence"; Synapse drops the others too).
func (hs *Homeserver) remotePresence(ctx context.Context, p federation.Presence) error {
	shared := false
	for _, u := range hs.sharingUsers(ctx, p.UserID) {
		if u != p.UserID && matrix.ServerOf(u) == hs.Config.ServerName {
			shared = true
			break
		}
	}
	if !shared {
		return errors.New("the user shares no room with a user of this server")
	}
	return hs.Presence.SetRemote(p.UserID, p.Presence, p.StatusMsg, time.Now().Add(-time.Duration(p.LastActiveAgo)*time.Millisecond))
}

// wireE2EEFederation connects the keys service to other servers: device
// lists, keys and to-device messages both ways (docs/federation.md,
// "End-to-end encryption").
func (hs *Homeserver) wireE2EEFederation() {
	hs.Keys.Fed = keys.Federation{
		Remote: federation.KeysRemote{S: hs.Federation},
		ServersSharing: func(ctx context.Context, userID string) []string {
			ms, err := hs.Store.UserMemberships(ctx, userID)
			if err != nil {
				hs.Log.Warn("device list update: reading memberships", "user", userID, "err", err)
				return nil
			}
			var out []string
			for _, m := range ms {
				if m.Membership != "join" {
					continue
				}
				servers, err := hs.Rooms.ServersInRoom(ctx, m.RoomID)
				if err != nil {
					continue
				}
				for _, srv := range servers {
					if srv != hs.Config.ServerName && !slices.Contains(out, srv) {
						out = append(out, srv)
					}
				}
			}
			slices.Sort(out)
			return out
		},
		SharedWithLocal: func(ctx context.Context, userID string) bool {
			ms, err := hs.Store.UserMemberships(ctx, userID)
			if err != nil {
				return false
			}
			for _, m := range ms {
				if m.Membership != "join" {
					continue
				}
				users, err := hs.Rooms.JoinedMembers(ctx, m.RoomID)
				if err != nil {
					continue
				}
				for _, u := range users {
					if matrix.ServerOf(u) == hs.Config.ServerName {
						return true
					}
				}
			}
			return false
		},
	}
	hs.Federation.Sinks.E2EE = func(ctx context.Context, origin, eduType string, content json.RawMessage) error {
		switch eduType {
		case "m.device_list_update":
			hs.Keys.HandleDeviceListUpdate(ctx, origin, content)
		case "m.signing_key_update":
			hs.Keys.HandleSigningKeyUpdate(ctx, origin, content)
		case "m.direct_to_device":
			return hs.Keys.HandleDirectToDevice(ctx, origin, content)
		}
		return nil
	}
}
