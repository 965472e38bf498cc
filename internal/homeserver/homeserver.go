// Package homeserver assembles one running Conclave from a Config: it opens
// the store, loads the signing key, builds the services and serves HTTP.
// cmd/conclave and the integration tests both start servers through it.
package homeserver

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"conclave/internal/accessrules"
	"conclave/internal/accountdata"
	"conclave/internal/accounts"
	"conclave/internal/changes"
	"conclave/internal/clientapi"
	"conclave/internal/config"
	"conclave/internal/contentscan"
	"conclave/internal/emaildomains"
	"conclave/internal/event"
	"conclave/internal/fedclient"
	"conclave/internal/federation"
	"conclave/internal/fedsender"
	"conclave/internal/keyring"
	"conclave/internal/keys"
	"conclave/internal/mail"
	"conclave/internal/matrix"
	"conclave/internal/media"
	"conclave/internal/mediaapi"
	"conclave/internal/metrics"
	"conclave/internal/notices"
	"conclave/internal/outbound"
	"conclave/internal/presence"
	"conclave/internal/profile"
	"conclave/internal/push"
	"conclave/internal/pushsender"
	"conclave/internal/receipts"
	"conclave/internal/retention"
	"conclave/internal/room"
	"conclave/internal/server"
	"conclave/internal/slidingsync"
	"conclave/internal/sso"
	"conclave/internal/stateres"
	"conclave/internal/store"
	"conclave/internal/store/postgres"
	"conclave/internal/store/sqlite"
	"conclave/internal/syncer"
	"conclave/internal/threadsubs"
	"conclave/internal/threepid"
	"conclave/internal/tlsutil"
	"conclave/internal/typing"
	"conclave/internal/validity"
	"conclave/internal/webclient"
)

// Homeserver is one Conclave instance.
type Homeserver struct {
	Config *config.Config
	Log    *slog.Logger
	Store  Store

	SigningKey *event.SigningKey
	Accounts   *accounts.Service
	Rooms      *room.Service
	Notifier   *syncer.Notifier
	Sync       *syncer.Service
	Handler    http.Handler
	Keys       *keys.Service
	Push       *push.Service
	// Notices sends server notices; nil when they are off.
	Notices *notices.Service
	Media   *media.Service
	// ContentScanner serves the content scanner API; nil when it is off.
	ContentScanner *contentscan.Service
	// Changes tracks every write when this process is the database's only
	// writer (nil otherwise): the /sync fast paths and caches ask it.
	Changes *changes.Tracker
	Metrics *metrics.Metrics // nil when admin_listen is empty (admin.go)

	// Retention purges expired events; nil when retention is off.
	Retention *retention.Service

	TLS               *tlsutil.Bundle     // nil when no TLS is configured
	FederationHandler http.Handler        // nil when federation_listen is empty
	Federation        *federation.Service // nil when federation_listen is empty
	FedSender         *fedsender.Sender   // delivery to other servers; nil likewise
	PushSender        *pushsender.Sender  // delivery to push gateways
	Routes            []string            // client listener patterns, "METHOD /path/{param}"
	// EmailDomains is the circle's e-mail domain map (nil without
	// email_domains); Mailer sends mail (nil without smtp_url). mail.go.
	EmailDomains *emaildomains.Map
	Mailer       mail.Sender
	Threepids    *threepid.Service // e-mail addresses, the identity endpoints
	SSO          *sso.Service      // single sign-on (sso.go); nil without oidc_issuer
	Validity     *validity.Service // account expiry (validity.go); nil when off

	mu             sync.Mutex
	clientAddr     net.Addr
	federationAddr net.Addr
	adminAddr      net.Addr
	ready          chan struct{}
	// Smaller Client-Server services; their hooks are set in New (see misc.go).
	Profiles    *profile.Service
	AccountData *accountdata.Service
	Typing      *typing.Service
	Receipts    *receipts.Service
	Presence    *presence.Service

	// Keyring: other servers' signing keys and our old ones (internal/keyring).
	Keyring *keyring.Keyring

	cluster *cluster // nil unless several processes may share the store (cluster.go)
	// memberNotices feeds the device-list side of membership changes
	// (wiring.go, membershipsChanged), outside the room's lock.
	memberNotices chan room.Notice
	// presenceWork runs presence fan-out (wake-ups, federation) in order,
	// off the request that changed the presence (see presenceLater).
	presenceWork chan func()

	// FedClient makes every request to other servers (nil when
	// federation_listen is empty): federation_allow, discovery, signing.
	FedClient          *fedclient.Client
	federationListener net.Listener // Options.FederationListener
	federationMux      *server.Mux  // nil when federation_listen is empty
}

// New opens the data directory and store and builds the services. It does
// not listen yet; Run does.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Homeserver, error) {
	return NewWith(ctx, cfg, log, Options{})
}

// Options are what NewWith takes besides the configuration.
type Options struct {
	// WrapStore, when set, wraps the opened store before any service sees
	// it. Tests use it to hold writes at chosen points (hstest.Gates). The
	// wrapper hides the store's optional interfaces (several processes), so
	// the server runs as the database's only writer.
	WrapStore func(Store) Store
	// FederationListener, when set, is the already-bound federation
	// listener to serve (federation_listen must name its address): a test
	// harness binds it first to learn the port its server name carries.
	FederationListener net.Listener
	// KeyFetcher gets other servers' /_matrix/key/v2/server for the
	// keyring instead of FedClient (tests); with neither, keys are not
	// fetched (only stored ones are used).
	KeyFetcher keyring.Fetcher
}

// NewWith is New with options.
func NewWith(ctx context.Context, cfg config.Config, log *slog.Logger, opts Options) (*Homeserver, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := openStore(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	if opts.WrapStore != nil {
		db = opts.WrapStore(db)
	}
	hs := &Homeserver{Config: &cfg, Log: log, Store: db, ready: make(chan struct{}), Metrics: newMetrics(cfg.AdminListen), federationListener: opts.FederationListener}
	hs.Accounts = accounts.New(db, cfg.ServerName, accounts.OptionsFrom(&cfg))
	key, err := loadSigningKey(ctx, db, filepath.Join(cfg.DataDir, "signing.key"))
	if err != nil {
		db.Close()
		return nil, err
	}
	hs.SigningKey = key
	// Other servers' keys come from their /_matrix/key/v2/server through
	// hs.FedClient (built by setupFederation), within federation_allow.
	var fetcher keyring.Fetcher = fedKeys{hs}
	if opts.KeyFetcher != nil {
		fetcher = opts.KeyFetcher
	}
	allow := outbound.NewAllowList(cfg.FederationAllow)
	if hs.Keyring, err = keyring.New(ctx, keyring.Config{ServerName: cfg.ServerName, Key: key, Store: db, Fetcher: fetcher, TrustedKeyServers: cfg.TrustedKeyServers, Allowed: allow.Allowed, Log: log}); err != nil {
		db.Close()
		return nil, err
	}
	if err := hs.setupFederation(); err != nil {
		db.Close()
		return nil, err
	}
	if err := hs.setupMail(); err != nil {
		db.Close()
		return nil, err
	}
	hs.Rooms = room.New(hs.countEvents(db), cfg.ServerName, key)
	hs.Rooms.ResolveState = stateres.Resolve
	hs.Rooms.EncryptPresets = map[string]bool{}
	for _, p := range strings.Split(cfg.EncryptPresets, ",") {
		if p = strings.TrimSpace(p); p != "" {
			hs.Rooms.EncryptPresets[p] = true
		}
	}
	hs.Rooms.RequireEncryption = cfg.RequireEncryption
	// E-mail invites become invites of the account the address gets, sent
	// as the inviter (threepid.ConvertInvites).
	hs.Threepids.InviteAs = func(ctx context.Context, roomID, sender, target string, extra map[string]json.RawMessage) error {
		_, err := hs.Rooms.SetMembership(ctx, &room.MembershipRequest{RoomID: roomID, Sender: sender, Target: target, Membership: "invite", Extra: extra})
		return err
	}
	hs.Rooms.AccessRules = &accessrules.Policy{ExternalServers: map[string]bool{}, DefaultRule: cfg.DefaultAccessRule}
	for _, name := range cfg.ExternalServers {
		hs.Rooms.AccessRules.ExternalServers[name] = true
	}
	// The domain map's catch-all server is the externals' (docs/rules.md).
	if ext := hs.EmailDomains.ExternalServer(); ext != "" {
		hs.Rooms.AccessRules.ExternalServers[ext] = true
	}
	hs.Keys = keys.New(db, cfg.ServerName)
	hs.Notifier = syncer.NewNotifier()
	hs.newMiscServices()
	hs.wire()
	// The media repository before federation: it serves and fetches media
	// over it.
	if hs.Media, err = newMedia(ctx, hs.Config, db, log); err != nil {
		db.Close()
		return nil, err
	}
	hs.setupFederationAPI()
	// Every write is marked in the change tracker, and /sync and the caches
	// ask it what may have changed instead of asking the store
	// (internal/changes, syncer/fastpath.go). This process sees every write
	// when it is the database's only writer; with several processes
	// (PostgreSQL), the tracker is fed by the database's notifications of
	// every stream allocation (changes/feed.go, cluster.go).
	pos, err := db.MaxStreamPos(ctx)
	if err != nil {
		db.Close()
		return nil, err
	}
	if hs.cluster == nil {
		hs.Changes = changes.New(func() int64 {
			pos, _ := db.MaxStreamPos(context.Background())
			return pos
		})
		// Sessions take no stream position: cached only here.
		hs.Accounts.CacheSessions(hs.Changes)
	} else {
		hs.Changes = changes.NewFed(pos, db.MaxStreamPos)
		hs.Rooms.ReadBarrier = func(ctx context.Context) error {
			pos, err := db.MaxStreamPos(ctx)
			if err == nil {
				hs.Changes.WaitHeard(pos)
			}
			return err
		}
	}
	hs.Rooms.TrackChanges(hs.Changes)
	hs.Sync.TrackChanges(hs.Changes)
	hs.Keys.Changes = hs.Changes
	hs.Receipts.Changes = hs.Changes
	hs.AccountData.Changes = hs.Changes
	hs.wirePush()
	hs.wireMetrics()
	if cfg.ServerNoticesLocalpart != "" {
		hs.Notices = &notices.Service{Rooms: hs.Rooms, Store: db, AccountData: hs.AccountData,
			SystemUser: matrix.UserID(cfg.ServerNoticesLocalpart, cfg.ServerName), RoomName: cfg.ServerNoticesRoomName}
		if err := hs.Notices.EnsureSystemUser(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	if cfg.Retention {
		hs.Retention = retention.New(db, hs.Rooms, retention.Config{DefaultMaxLifetime: cfg.RetentionDefaultMaxLifetime.Duration,
			AllowedMin: cfg.RetentionAllowedLifetimeMin.Duration, AllowedMax: cfg.RetentionAllowedLifetimeMax.Duration,
			Interval: cfg.RetentionPurgeInterval.Duration}, log)
	}

	// Thread subscriptions (MSC4306) wake the user's syncs like account
	// data; sliding sync reports them (MSC4308).
	threadSubs := threadsubs.New(db, hs.Rooms)
	threadSubs.Changes = hs.Changes
	threadSubs.Notify = func(users ...string) {
		if hs.AccountData.Notify != nil {
			hs.AccountData.Notify(users...)
		}
	}
	sliding := slidingsync.New(db, hs.Rooms, hs.Sync)
	sliding.ThreadSubs = threadSubs

	mux := server.NewMux()
	hs.setupSSO()
	hs.setupValidity()
	api := clientapi.New(clientapi.Deps{Config: hs.Config, Store: db, Accounts: hs.Accounts, Rooms: hs.Rooms, Sync: hs.Sync,
		SlidingSync: sliding, ThreadSubs: threadSubs,
		Profiles: hs.Profiles, AccountData: hs.AccountData, Typing: hs.Typing, Receipts: hs.Receipts, Presence: hs.Presence, Keys: hs.Keys, Push: hs.Push, Federation: hs.Federation, Notices: hs.Notices,
		Threepids: hs.Threepids, SSO: hs.SSO, Validity: hs.Validity})
	api.Register(mux)
	if hs.federationMux != nil {
		// The federation API is served on its own listener; the client
		// listener still knows its paths (405 for a wrong method).
		mux.KnowElsewhere("/_matrix/federation/", hs.federationMux)
		mux.KnowElsewhere("/_matrix/key/", hs.federationMux)
	}
	if hs.ContentScanner, err = hs.contentScanner(); err != nil {
		db.Close()
		return nil, err
	}
	(&mediaapi.API{Media: hs.Media, Accounts: hs.Accounts, Preview: hs.urlPreview(), Scanner: hs.ContentScanner}).Register(mux)
	if cfg.WebClient {
		if web := webclient.New(http.HandlerFunc(server.NotFound)); web != nil {
			mux.Fallback(web)
		}
	}
	proxies, err := cfg.TrustedProxyPrefixes()
	if err != nil {
		db.Close()
		return nil, err
	}
	hs.Handler = server.Wrap(server.WithClientIP(server.WithDeadline(hs.instrument(mux), cfg.RequestTimeout.Duration, syncer.MaxTimeout, server.IsSlow), proxies), log)
	hs.Routes = mux.Patterns()
	return hs, nil
}

// Store is what a homeserver persists through: the whole store contract,
// on SQLite or PostgreSQL, plus a consistency check for tests.
type Store interface {
	store.Store
	IntegrityCheck(ctx context.Context) error
}

// openStore opens the database cfg names: PostgreSQL for a postgres:// URL,
// SQLite (in the data directory unless sqlite:PATH says where) otherwise.
func openStore(ctx context.Context, cfg *config.Config) (Store, error) {
	if strings.HasPrefix(cfg.Database, "postgres://") || strings.HasPrefix(cfg.Database, "postgresql://") {
		return postgres.Open(ctx, cfg.Database)
	}
	return sqlite.Open(ctx, cfg.SQLitePath())
}

// Run serves until ctx is cancelled, then shuts down gracefully and closes
// the store: every acknowledged write is already committed by then.
func (hs *Homeserver) Run(ctx context.Context) error {
	defer hs.Store.Close()
	defer hs.Media.Close()        // its staging directory: after the last request
	defer hs.Threepids.WaitMail() // invitation mails on their way (their own timeout bounds them)
	// Long-polls return as soon as shutdown starts, so in-flight writes are
	// what the grace period waits for.
	go func() { <-ctx.Done(); hs.Notifier.Close() }()
	if err := hs.cluster.start(ctx); err != nil {
		return err
	}
	if hs.FedSender != nil {
		// Delivery to other servers runs until shutdown and ends before the
		// store closes (deferred above, so run after this).
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Device lists changed but not announced before a crash.
			pending := make(chan struct{})
			go func() {
				defer close(pending)
				if err := hs.Keys.AnnouncePending(ctx); err != nil && ctx.Err() == nil {
					hs.Log.Warn("announcing pending device list changes", "err", err)
				}
				// Announcements that failed since (a store error) go again.
				tick := time.NewTicker(time.Minute)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
					}
					if err := hs.Keys.RetryFailedAnnouncements(ctx); err != nil && ctx.Err() == nil {
						hs.Log.Warn("announcing device list changes again", "err", err)
					}
				}
			}()
			if err := hs.FedSender.Run(ctx); err != nil && ctx.Err() == nil {
				hs.Log.Error("federation sender stopped", "err", err)
			}
			<-pending
		}()
		defer func() { <-done }()
	}
	if hs.PushSender != nil {
		// Pushes run until shutdown and end before the store closes.
		done := make(chan struct{})
		go func() {
			defer close(done)
			hs.PushSender.Run(ctx)
		}()
		defer func() { <-done }()
	}
	// Devices' last sightings are written until shutdown, and once more
	// before the store closes.
	seenDone := make(chan struct{})
	go func() {
		defer close(seenDone)
		hs.Accounts.RunSeen(ctx, func(err error) { hs.Log.Warn("recording when devices were last seen", "err", err) })
	}()
	defer func() { <-seenDone }()
	// Renewal mails run until shutdown and end before the store closes.
	validityDone := hs.runValidity(ctx)
	defer func() { <-validityDone }()
	if hs.Retention != nil {
		// Purges run until shutdown and end before the store closes.
		done := make(chan struct{})
		go func() {
			defer close(done)
			hs.Retention.Run(ctx)
		}()
		defer func() { <-done }()
	}
	return server.Serve(ctx, hs.Log, hs.Config.ShutdownTimeout.Duration, hs.listeners()...)
}

// Ready is closed once every listener is bound.
func (hs *Homeserver) Ready() <-chan struct{} { return hs.ready }

// ClientAddr is the bound client API address (after Ready).
func (hs *Homeserver) ClientAddr() net.Addr {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return hs.clientAddr
}
