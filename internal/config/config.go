// Package config owns Conclave's configuration: one Config struct with
// defaults and validation, filled from a YAML file, then CONCLAVE_* environment
// variables, then command-line flags (flag > env > file > default).
package config

import (
	"errors"
	"flag"
	"fmt"
	"math"
	stdmail "net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"conclave/internal/mail"
	"conclave/internal/matrix"
)

// Config is everything `conclave serve` can be told. Each field's yaml tag is
// also its flag name (with - for _) and env name (CONCLAVE_ + upper case).
type Config struct {
	ServerName               string   `yaml:"server_name" help:"the Matrix server name (the part after : in user IDs)"`
	DataDir                  string   `yaml:"data_dir" help:"SQLite database, signing key and media; created on first start"`
	Listen                   string   `yaml:"listen" help:"client API listen address (plain HTTP)"`
	FederationListen         string   `yaml:"federation_listen" help:"federation API listen address (HTTPS); empty disables"`
	Database                 string   `yaml:"database" help:"empty: SQLite in the data dir; a postgres:// URL selects PostgreSQL"`
	RegistrationSharedSecret string   `yaml:"registration_shared_secret" help:"enables the Synapse-compatible /_synapse/admin/v1/register"`
	EnableRegistration       bool     `yaml:"enable_registration" help:"open registration with m.login.dummy"`
	RegistrationTokens       string   `yaml:"registration_tokens" help:"comma-separated registration tokens accepted by m.login.registration_token"`
	PublicBaseURL            string   `yaml:"public_base_url" help:"client-facing base URL (https://matrix.example.org): advertised in /.well-known/matrix/client, and the base of the links in the mails the server sends"`
	TLSCert                  string   `yaml:"tls_cert" help:"TLS certificate file for the listeners"`
	TLSKey                   string   `yaml:"tls_key" help:"TLS key file for the listeners"`
	TLSCACert                string   `yaml:"tls_ca_cert" help:"CA certificate: sign a certificate for server_name at start and trust it for federation"`
	TLSCAKey                 string   `yaml:"tls_ca_key" help:"CA key used with tls_ca_cert"`
	FederationAllow          []string `yaml:"federation_allow" help:"closed circle: comma-separated server names (with their port, if any); only these may send to us or be contacted by us (requests, keys, notary, .well-known, media), others get 403 M_FORBIDDEN; empty: open federation"`
	FederationAllowPrivate   bool     `yaml:"federation_allow_private_addresses" help:"let server discovery lead to private, loopback and link-local addresses (closed networks, tests); servers named in federation_allow may always be reached there"`
	TrustedKeyServers        []string `yaml:"trusted_key_servers" help:"comma-separated notaries (server names) asked, in turn, for a server's signing keys when that server cannot give them itself (down): listing the circle's other servers lets a member's events be verified while its server is down; this server's own name is skipped; must be inside federation_allow when that is set; empty: none"`
	PushAllowPrivate         bool     `yaml:"push_allow_private_addresses" help:"let pushers' push gateway URLs lead to private, loopback and link-local addresses (closed networks, tests)"`
	AppserviceDir            string   `yaml:"appservice_dir" help:"application services are not supported yet: must stay empty"`
	RateLimits               bool     `yaml:"rate_limits" help:"rate limits on login, registration and the expensive per-user endpoints (the *_rate_* settings; server admins exempt); false: none (benchmarks)"`
	TrustedProxies           string   `yaml:"trusted_proxies" help:"comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For names the client (rate limits, last_seen_ip); empty: the TCP peer is the client"`
	EncryptPresets           string   `yaml:"encrypt_presets" help:"comma-separated createRoom presets whose rooms are end-to-end encrypted by default"`
	RequireEncryption        bool     `yaml:"require_encryption" help:"refuse unencrypted non-public rooms and removing or weakening m.room.encryption"`
	// The state's rules (docs/rules.md).
	ExternalServers          []string `yaml:"external_servers" help:"comma-separated server names whose users are externals (the circle's external server): never in restricted rooms, invited only into unrestricted ones, never given power there, cannot create rooms"`
	DefaultAccessRule        string   `yaml:"default_access_rule" help:"access rule (im.vector.room.access_rules) of private rooms created without one: restricted (no externals) or unrestricted; direct chats get direct, public rooms restricted"`
	EmailDomains             string   `yaml:"email_domains" help:"file mapping the circle's e-mail domains to their servers (docs/rules.md; every server of a circle loads the same file): registration then needs a verified address that maps to this server, and /_matrix/identity answers from it"`
	SMTPURL                  string   `yaml:"smtp_url" help:"mail server for verification and reset mails: smtp://[user:password@]host[:port] (STARTTLS when offered, port 25) or smtps://… (TLS, port 465); credentials only over TLS or to loopback; empty: no mail"`
	SMTPFrom                 string   `yaml:"smtp_from" help:"sender of the server's mails: noreply@example.org or \"Name <noreply@example.org>\""`
	PasswordLogin            bool     `yaml:"password_login" help:"log in with a password (m.login.password); false leaves single sign-on as the only way in"`
	OIDCIssuer               string   `yaml:"oidc_issuer" help:"single sign-on: the OpenID Connect provider's issuer URL (https://…; its /.well-known/openid-configuration is read); empty: no single sign-on"`
	OIDCClientID             string   `yaml:"oidc_client_id" help:"single sign-on: this server's client ID at the provider, whose redirect URI is public_base_url + /_synapse/client/oidc/callback"`
	OIDCClientSecret         string   `yaml:"oidc_client_secret" help:"single sign-on: this server's client secret at the provider"`
	OIDCProviderName         string   `yaml:"oidc_provider_name" help:"single sign-on: the provider's name shown by clients on their login button"`
	OIDCRequireEmailVerified bool     `yaml:"oidc_require_email_verified" help:"single sign-on: require the provider's email_verified claim to be true; false trusts its email claim as given, for providers that only hand out addresses they verified but do not say so"`
	SSORedirectAllow         []string `yaml:"sso_redirect_allow" help:"single sign-on: comma-separated client URLs (scheme://host[/path]) sent back to at once after sign-in; any other client URL gets a confirmation page first, so a link to a stranger's client cannot take the login unseen; the web client this server serves at public_base_url/ needs no entry"`
	ExternalAccountValidity  Duration `yaml:"external_account_validity" help:"how long an external user's account lasts (90d, 2160h) before it must be renewed; every request but renewal then answers 403 ORG_MATRIX_EXPIRED_ACCOUNT; 0: accounts do not expire. Applies on the externals' server: one named in its own external_servers, or the catch-all server of email_domains"`
	AccountRenewalNotice     Duration `yaml:"account_renewal_notice" help:"how long before an account expires its renewal mail is sent (to its bound e-mail addresses, through smtp_url)"`
	EmailNotificationDelay   Duration `yaml:"email_notification_delay" help:"how long a notification waits to be read before an e-mail pusher (kind email) mails it"`
	PasswordMinLength        int      `yaml:"password_min_length" help:"shortest password accepted at registration and password change (0: no minimum); announced by /password_policy"`
	PasswordRequireDigit     bool     `yaml:"password_require_digit" help:"passwords must contain a digit"`
	PasswordRequireSymbol    bool     `yaml:"password_require_symbol" help:"passwords must contain a symbol (a character other than an ASCII letter or digit)"`
	PasswordRequireLowercase bool     `yaml:"password_require_lowercase" help:"passwords must contain a lowercase letter"`
	PasswordRequireUppercase bool     `yaml:"password_require_uppercase" help:"passwords must contain an uppercase letter"`
	LoginRatePerSecond       float64  `yaml:"login_rate_per_second" help:"sustained login/registration attempts per second per IP and per account"`
	LoginRateBurst           int      `yaml:"login_rate_burst" help:"login/registration burst per IP and per account"`
	MaxRequestBytes          int64    `yaml:"max_request_bytes" help:"largest accepted JSON request body"`
	WebClient                bool     `yaml:"web_client" help:"serve the embedded web client at / (issue 13); false: / answers 404 like any unknown path"`
	LogFormat                string   `yaml:"log_format" help:"text or json; empty chooses text on a terminal, json otherwise"`
	LogLevel                 string   `yaml:"log_level" help:"debug, info, warn or error"`
	AdminListen              string   `yaml:"admin_listen" help:"metrics and pprof listener (loopback recommended); empty disables"`
	AdminPprof               bool     `yaml:"admin_pprof" help:"serve the Go profiler at /debug/pprof/ on admin_listen (false: /metrics only)"`
	AccessTokenLifetime      Duration `yaml:"access_token_lifetime" help:"lifetime of access tokens issued with refresh tokens"`
	PasswordHashMemoryKiB    int      `yaml:"password_hash_memory_kib" help:"argon2id memory per password hash in KiB (tests lower it)"`
	ShutdownTimeout          Duration `yaml:"shutdown_timeout" help:"how long graceful shutdown waits for requests"`
	// Bounds on what one client can hold (docs/hardening.md).
	MaxConnections    int      `yaml:"max_connections" help:"client connections open at once; more wait to be accepted"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" help:"time a client has to send its request headers (slowloris)"`
	RequestTimeout    Duration `yaml:"request_timeout" help:"deadline for handling one request (/sync long-polls and media get 5m more)"`
	MaxSyncsPerDevice int      `yaml:"max_syncs_per_device" help:"concurrent /sync requests per device; more get 429 M_LIMIT_EXCEEDED"`
	// Media repository.
	MaxUploadBytes         int64  `yaml:"max_upload_bytes" help:"largest accepted media upload"`
	MediaDir               string `yaml:"media_dir" help:"media files; empty: the media directory inside data_dir"`
	ClamdAddress           string `yaml:"clamd_address" help:"scan uploads with clamd at tcp:HOST:PORT or unix:/path; empty disables"`
	ClamdUnreachable       string `yaml:"clamd_unreachable" help:"refuse or accept uploads while clamd cannot be reached"`
	ThumbnailMaxPixels     int64  `yaml:"thumbnail_max_pixels" help:"larger images (width*height) are not thumbnailed"`
	LegacyMediaFreeze      bool   `yaml:"legacy_media_freeze" help:"media uploaded while on are not served by the unauthenticated /_matrix/media/v3 endpoints"`
	URLPreview             bool   `yaml:"url_preview" help:"URL previews (/preview_url): the server fetches the pages users are about to link to (off: a site learns that someone here looks at it)"`
	URLPreviewAllowPrivate bool   `yaml:"url_preview_allow_private_addresses" help:"let URL previews fetch private, loopback and link-local addresses (closed networks, tests); off, such URLs are refused"`
	// Message retention (internal/retention, docs/rules.md).
	Retention                   bool     `yaml:"retention" help:"message retention: purge events older than their room's m.room.retention max_lifetime, or retention_default_max_lifetime (state events and each room's latest events are kept); off: nothing is purged"`
	RetentionDefaultMaxLifetime Duration `yaml:"retention_default_max_lifetime" help:"with retention on, how long events of rooms without a max_lifetime are kept (e.g. 4320h for 180 days); 0: for ever"`
	RetentionAllowedLifetimeMin Duration `yaml:"retention_allowed_lifetime_min" help:"with retention on, the shortest lifetime a room's max_lifetime may give its events (shorter ones purge at this age instead); 0: no bound"`
	RetentionAllowedLifetimeMax Duration `yaml:"retention_allowed_lifetime_max" help:"with retention on, the longest lifetime a room's max_lifetime may give its events (longer ones purge at this age instead); 0: no bound"`
	RetentionPurgeInterval      Duration `yaml:"retention_purge_interval" help:"with retention on, time between purge runs"`
	// The content scanner (internal/contentscan, docs/media.md).
	ContentScanner             bool     `yaml:"content_scanner" help:"serve Tchap's content scanner API (/_matrix/media_proxy/unstable): clients hand the server an attachment's key so clamd can scan end-to-end encrypted files; the server then sees their plaintext (in memory only). Needs clamd_address"`
	ContentScannerAllowedTypes []string `yaml:"content_scanner_allowed_types" help:"content scanner: comma-separated MIME types (type/subtype or type/*), detected from the content, that are allowed; others get 403 MCS_MIME_TYPE_FORBIDDEN; empty: no allow list"`
	ContentScannerBlockedTypes []string `yaml:"content_scanner_blocked_types" help:"content scanner: comma-separated MIME types (type/subtype or type/*), detected from the content, that are refused with 403 MCS_MIME_TYPE_FORBIDDEN (not with content_scanner_allowed_types)"`
	// Server notices (internal/notices).
	ServerNoticesLocalpart string `yaml:"server_notices_localpart" help:"localpart of the system user that sends server notices (/_synapse/admin/v1/send_server_notice); empty disables them"`
	ServerNoticesRoomName  string `yaml:"server_notices_room_name" help:"name of the room each user gets server notices in"`
	// Per-user limits on the expensive endpoints (docs/hardening.md).
	// Server admins are exempt, as in Synapse.
	EventRatePerSecond         float64 `yaml:"event_rate_per_second" help:"sustained events sent per second per user (send, state, redact)"`
	EventRateBurst             int     `yaml:"event_rate_burst" help:"events a user may send in a burst"`
	CreateRoomRatePerSecond    float64 `yaml:"create_room_rate_per_second" help:"sustained createRoom and room upgrade calls per second per user"`
	CreateRoomRateBurst        int     `yaml:"create_room_rate_burst" help:"createRoom and room upgrade burst per user"`
	InviteRatePerSecond        float64 `yaml:"invite_rate_per_second" help:"sustained invites per second per inviting user"`
	InviteRateBurst            int     `yaml:"invite_rate_burst" help:"invite burst per inviting user"`
	SearchRatePerSecond        float64 `yaml:"search_rate_per_second" help:"sustained message searches per second per user"`
	SearchRateBurst            int     `yaml:"search_rate_burst" help:"message search burst per user"`
	UserDirectoryRatePerSecond float64 `yaml:"user_directory_rate_per_second" help:"sustained user directory searches per second per user"`
	UserDirectoryRateBurst     int     `yaml:"user_directory_rate_burst" help:"user directory search burst per user"`
	FullSyncRatePerSecond      float64 `yaml:"full_sync_rate_per_second" help:"sustained initial or full_state /sync requests per second per user"`
	FullSyncRateBurst          int     `yaml:"full_sync_rate_burst" help:"initial or full_state /sync burst per user"`
}

// Duration is a time.Duration written as "30s" in YAML, env and flags.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	// Whole days ("90d") too, for the long settings (account validity).
	if days, ok := strings.CutSuffix(string(b), "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n < 0 || n > 100*365 {
			return errors.New("bad number of days")
		}
		d.Duration = time.Duration(n) * 24 * time.Hour
		return nil
	}
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		ServerName:             "localhost",
		ServerNoticesLocalpart: "notices",
		ServerNoticesRoomName:  "Server Notices",
		DataDir:                "./conclave-data",
		Listen:                 "127.0.0.1:8008",
		RateLimits:             true,
		WebClient:              true,
		AdminPprof:             true,
		LoginRatePerSecond:     0.5,
		LoginRateBurst:         5,
		MaxRequestBytes:        1 << 20,
		LogLevel:               "info",
		AccessTokenLifetime:    Duration{5 * time.Minute},
		PasswordHashMemoryKiB:  64 * 1024,
		ShutdownTimeout:        Duration{10 * time.Second},
		MaxConnections:         10000,
		ReadHeaderTimeout:      Duration{10 * time.Second},
		RequestTimeout:         Duration{2 * time.Minute},
		MaxSyncsPerDevice:      4,
		MaxUploadBytes:         50 << 20,
		EncryptPresets:         "private_chat,trusted_private_chat",
		DefaultAccessRule:      "restricted",
		PasswordLogin:          true,
		OIDCProviderName:       "Single sign-on",

		OIDCRequireEmailVerified: true,

		AccountRenewalNotice:   Duration{7 * 24 * time.Hour},
		ClamdUnreachable:       "refuse",
		ThumbnailMaxPixels:     32_000_000,
		EmailNotificationDelay: Duration{10 * time.Minute},
		RetentionPurgeInterval: Duration{time.Hour},

		// Per-user limits, set well above what a busy person does, so only
		// scripts meet them. Synapse's rc_message (0.2/s, burst 10) is met
		// by someone pasting a dozen lines; these are not.
		EventRatePerSecond:         1,
		EventRateBurst:             30,
		CreateRoomRatePerSecond:    0.05, // 3 a minute
		CreateRoomRateBurst:        10,
		InviteRatePerSecond:        0.5,
		InviteRateBurst:            20,
		SearchRatePerSecond:        0.5,
		SearchRateBurst:            10,
		UserDirectoryRatePerSecond: 2, // clients search as the user types
		UserDirectoryRateBurst:     20,
		FullSyncRatePerSecond:      0.1, // 6 a minute
		FullSyncRateBurst:          10,
	}
}

// Error names the key that is wrong and why; cmd/conclave prints it on one
// line and exits 2.
type Error struct {
	Key, Reason string
}

func (e *Error) Error() string { return "config: " + e.Key + ": " + e.Reason }

// Load builds the configuration from args (flags, including --config FILE),
// the environment (getenv), and the file, in that precedence.
func Load(args []string, getenv func(string) string) (Config, error) {
	cfg := Default()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(discard{})
	configFile := fs.String("config", "", "YAML configuration file")
	fields := fieldsOf(&cfg)
	set := map[string]string{}
	for _, f := range fields {
		name := f.flag
		if _, isBool := f.v.Addr().Interface().(*bool); isBool {
			// --flag alone means true; --flag=false is accepted too.
			fs.BoolFunc(name, f.help, func(s string) error { set[name] = s; return nil })
			continue
		}
		fs.Func(name, f.help, func(s string) error { set[name] = s; return nil })
	}
	if err := fs.Parse(args); err != nil {
		return cfg, &Error{Key: "flags", Reason: err.Error()}
	}
	if fs.NArg() > 0 {
		return cfg, &Error{Key: "flags", Reason: "unexpected argument " + strconv.Quote(fs.Arg(0))}
	}
	if *configFile == "" {
		*configFile = getenv("CONCLAVE_CONFIG")
	}
	if *configFile != "" {
		if err := loadFile(&cfg, *configFile, getenv); err != nil {
			return cfg, err
		}
	}
	for _, f := range fields {
		if v := getenv(f.env); v != "" {
			if err := f.setText(v); err != nil {
				return cfg, &Error{Key: f.env, Reason: err.Error()}
			}
		}
	}
	for _, f := range fields {
		if v, ok := set[f.flag]; ok {
			if err := f.setText(v); err != nil {
				return cfg, &Error{Key: "--" + f.flag, Reason: err.Error()}
			}
		}
	}
	return cfg, cfg.Validate()
}

// Usage describes every flag, for `conclave serve --help`.
func Usage() string {
	var b strings.Builder
	b.WriteString("  --config FILE\n\tYAML configuration file (env CONCLAVE_CONFIG)\n")
	cfg := Default()
	for _, f := range fieldsOf(&cfg) {
		fmt.Fprintf(&b, "  --%s\n\t%s (env %s, default %q)\n", f.flag, f.help, f.env, f.text())
	}
	return b.String()
}

func loadFile(cfg *Config, path string, getenv func(string) string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return &Error{Key: "config", Reason: err.Error()}
	}
	// ${VAR} in the file is replaced by the environment variable, so one file
	// serves many containers (the Complement image reads SERVER_NAME this way).
	expanded := os.Expand(string(data), getenv)
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal([]byte(expanded), &raw); err != nil {
		return &Error{Key: path, Reason: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	byKey := map[string]field{}
	for _, f := range fieldsOf(cfg) {
		byKey[f.key] = f
	}
	for k, node := range raw {
		f, ok := byKey[k]
		if !ok {
			return &Error{Key: k, Reason: "unknown configuration key"}
		}
		if node.Kind == yaml.SequenceNode {
			// A list setting may be a YAML list as well as "a,b".
			if _, isList := f.v.Addr().Interface().(*[]string); isList {
				var items []string
				if err := node.Decode(&items); err != nil {
					return &Error{Key: k, Reason: "must be a list of strings"}
				}
				f.v.Set(reflect.ValueOf(cleanList(items)))
				continue
			}
		}
		if node.Kind != yaml.ScalarNode {
			return &Error{Key: k, Reason: "must be a single value"}
		}
		if err := f.setText(node.Value); err != nil {
			return &Error{Key: k, Reason: err.Error()}
		}
	}
	return nil
}

// Validate checks the values that can be checked without I/O.
func (c *Config) Validate() error {
	if !matrix.ValidServerName(c.ServerName) {
		return &Error{Key: "server_name", Reason: fmt.Sprintf("%q is not a valid server name", c.ServerName)}
	}
	if c.DataDir == "" {
		return &Error{Key: "data_dir", Reason: "must not be empty"}
	}
	if c.Listen == "" {
		return &Error{Key: "listen", Reason: "must not be empty"}
	}
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") && !strings.HasPrefix(c.Database, "sqlite:") {
		return &Error{Key: "database", Reason: "must be empty, sqlite:PATH or a postgres:// URL"}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return &Error{Key: "tls_cert", Reason: "tls_cert and tls_key go together"}
	}
	if (c.TLSCACert == "") != (c.TLSCAKey == "") {
		return &Error{Key: "tls_ca_cert", Reason: "tls_ca_cert and tls_ca_key go together"}
	}
	for _, name := range c.ExternalServers {
		if !matrix.ValidServerName(name) {
			return &Error{Key: "external_servers", Reason: fmt.Sprintf("%q is not a valid server name (host[:port])", name)}
		}
	}
	if c.DefaultAccessRule != "restricted" && c.DefaultAccessRule != "unrestricted" {
		return &Error{Key: "default_access_rule", Reason: "must be restricted or unrestricted"}
	}
	if err := c.validateMail(); err != nil {
		return err
	}
	if err := c.validateSSO(); err != nil {
		return err
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"retention_default_max_lifetime", c.RetentionDefaultMaxLifetime}, {"retention_allowed_lifetime_min", c.RetentionAllowedLifetimeMin}, {"retention_allowed_lifetime_max", c.RetentionAllowedLifetimeMax}} {
		if d.v.Duration < 0 {
			return &Error{Key: d.key, Reason: "must not be negative"}
		}
	}
	if c.RetentionAllowedLifetimeMax.Duration > 0 && c.RetentionAllowedLifetimeMin.Duration > c.RetentionAllowedLifetimeMax.Duration {
		return &Error{Key: "retention_allowed_lifetime_min", Reason: "must not exceed retention_allowed_lifetime_max"}
	}
	if c.RetentionPurgeInterval.Duration < time.Second {
		return &Error{Key: "retention_purge_interval", Reason: "must be at least 1s"}
	}
	if c.PasswordMinLength < 0 || c.PasswordMinLength > 512 {
		return &Error{Key: "password_min_length", Reason: "must be between 0 and 512"}
	}
	for _, name := range c.FederationAllow {
		if !matrix.ValidServerName(name) {
			return &Error{Key: "federation_allow", Reason: fmt.Sprintf("%q is not a valid server name (host[:port])", name)}
		}
	}
	for _, name := range c.TrustedKeyServers {
		if !matrix.ValidServerName(name) {
			return &Error{Key: "trusted_key_servers", Reason: fmt.Sprintf("%q is not a valid server name (host[:port])", name)}
		}
		// A notary outside the circle would never be contacted: say so
		// now rather than fail silently when a server is down.
		if len(c.FederationAllow) > 0 && !slices.ContainsFunc(c.FederationAllow, func(a string) bool { return strings.EqualFold(a, name) }) {
			return &Error{Key: "trusted_key_servers", Reason: fmt.Sprintf("%q is not in federation_allow: it would never be contacted", name)}
		}
	}
	if c.MaxRequestBytes < 65536 {
		return &Error{Key: "max_request_bytes", Reason: "must be at least 65536"}
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if c.AppserviceDir != "" {
		// Accepting it and loading nothing would let an operator believe
		// their bridges are registered.
		return &Error{Key: "appservice_dir", Reason: "application services are not supported yet; remove the setting"}
	}
	if c.PasswordHashMemoryKiB < 64 || c.PasswordHashMemoryKiB > 1<<20 {
		return &Error{Key: "password_hash_memory_kib", Reason: "must be between 64 and 1048576"}
	}
	if c.MaxConnections < 1 || c.MaxSyncsPerDevice < 1 {
		return &Error{Key: "max_connections", Reason: "max_connections and max_syncs_per_device must be positive"}
	}
	if c.ReadHeaderTimeout.Duration <= 0 || c.RequestTimeout.Duration <= 0 {
		return &Error{Key: "request_timeout", Reason: "read_header_timeout and request_timeout must be positive"}
	}
	for _, p := range strings.Split(c.EncryptPresets, ",") {
		switch strings.TrimSpace(p) {
		case "", "private_chat", "trusted_private_chat", "public_chat":
		default:
			return &Error{Key: "encrypt_presets", Reason: fmt.Sprintf("unknown preset %q", strings.TrimSpace(p))}
		}
	}
	if err := c.validateMedia(); err != nil {
		return err
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return &Error{Key: "log_format", Reason: "must be text or json"}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return &Error{Key: "log_level", Reason: "must be debug, info, warn or error"}
	}
	return nil
}

func (c *Config) validateMail() error {
	if c.SMTPURL != "" {
		if err := mail.ValidateURL(c.SMTPURL); err != nil {
			return &Error{Key: "smtp_url", Reason: err.Error()}
		}
		if _, err := stdmail.ParseAddress(c.SMTPFrom); err != nil {
			return &Error{Key: "smtp_from", Reason: "smtp_url needs smtp_from, an e-mail address such as noreply@example.org"}
		}
		// Mails carry links back to the server.
		u, err := url.Parse(c.PublicBaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return &Error{Key: "public_base_url", Reason: "smtp_url needs public_base_url, the server's client URL such as https://matrix.example.org (the links in mails start with it)"}
		}
	}
	if c.EmailNotificationDelay.Duration <= 0 {
		return &Error{Key: "email_notification_delay", Reason: "must be positive"}
	}
	if c.EmailDomains != "" && c.EnableRegistration && c.SMTPURL == "" {
		return &Error{Key: "email_domains", Reason: "registration with email_domains verifies addresses by mail: set smtp_url"}
	}
	return nil
}

func (c *Config) validateSSO() error {
	if c.OIDCIssuer != "" {
		u, err := url.Parse(c.OIDCIssuer)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return &Error{Key: "oidc_issuer", Reason: "must be the provider's issuer URL, https://…"}
		}
		if c.OIDCClientID == "" {
			return &Error{Key: "oidc_client_id", Reason: "oidc_issuer needs oidc_client_id"}
		}
		b, err := url.Parse(c.PublicBaseURL)
		if err != nil || (b.Scheme != "https" && b.Scheme != "http") || b.Host == "" {
			return &Error{Key: "public_base_url", Reason: "oidc_issuer needs public_base_url, the server's client URL such as https://matrix.example.org (the provider sends browsers back there)"}
		}
	}
	for _, a := range c.SSORedirectAllow {
		u, err := url.Parse(a)
		if err != nil || u.Scheme == "" || (u.Host == "" && (u.Scheme == "http" || u.Scheme == "https")) || u.RawQuery != "" || u.Fragment != "" {
			return &Error{Key: "sso_redirect_allow", Reason: fmt.Sprintf("%q is not a client URL (scheme://host[/path])", a)}
		}
	}
	if !c.PasswordLogin && c.OIDCIssuer == "" {
		return &Error{Key: "password_login", Reason: "turning password login off needs single sign-on (oidc_issuer): nobody could log in"}
	}
	if c.ExternalAccountValidity.Duration < 0 || (c.ExternalAccountValidity.Duration > 0 && c.ExternalAccountValidity.Duration < time.Hour) {
		return &Error{Key: "external_account_validity", Reason: "must be 0 (off) or at least 1h"}
	}
	if c.AccountRenewalNotice.Duration < 0 {
		return &Error{Key: "account_renewal_notice", Reason: "must not be negative"}
	}
	return nil
}

func (c *Config) validateLimits() error {
	for _, l := range []struct {
		key   string
		rate  float64
		burst int
	}{
		{"login_rate", c.LoginRatePerSecond, c.LoginRateBurst},
		{"event_rate", c.EventRatePerSecond, c.EventRateBurst},
		{"create_room_rate", c.CreateRoomRatePerSecond, c.CreateRoomRateBurst},
		{"invite_rate", c.InviteRatePerSecond, c.InviteRateBurst},
		{"search_rate", c.SearchRatePerSecond, c.SearchRateBurst},
		{"user_directory_rate", c.UserDirectoryRatePerSecond, c.UserDirectoryRateBurst},
		{"full_sync_rate", c.FullSyncRatePerSecond, c.FullSyncRateBurst},
	} {
		if !(l.rate > 0) || math.IsInf(l.rate, 0) {
			return &Error{Key: l.key + "_per_second", Reason: "must be a positive number"}
		}
		if l.burst < 1 {
			return &Error{Key: l.key + "_burst", Reason: "must be at least 1"}
		}
	}
	if _, err := c.TrustedProxyPrefixes(); err != nil {
		return err
	}
	return nil
}

// TrustedProxyPrefixes parses trusted_proxies: comma-separated IP addresses
// (one host each) or CIDR prefixes, IPv4 or IPv6.
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(c.TrustedProxies, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, &Error{Key: "trusted_proxies", Reason: fmt.Sprintf("%q is not an IP address or CIDR prefix", s)}
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, &Error{Key: "trusted_proxies", Reason: fmt.Sprintf("%q is not an IP address or CIDR prefix", s)}
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (c *Config) validateMedia() error {
	if c.MaxUploadBytes < 1 {
		return &Error{Key: "max_upload_bytes", Reason: "must be positive"}
	}
	if c.ClamdAddress != "" && !strings.HasPrefix(c.ClamdAddress, "tcp:") && !strings.HasPrefix(c.ClamdAddress, "unix:/") {
		return &Error{Key: "clamd_address", Reason: "must be empty, tcp:HOST:PORT or unix:/path"}
	}
	if c.ClamdUnreachable != "refuse" && c.ClamdUnreachable != "accept" {
		return &Error{Key: "clamd_unreachable", Reason: "must be refuse or accept"}
	}
	if c.ContentScanner && c.ClamdAddress == "" {
		return &Error{Key: "content_scanner", Reason: "needs clamd_address: the scanner scans with clamd"}
	}
	if len(c.ContentScannerAllowedTypes) > 0 && len(c.ContentScannerBlockedTypes) > 0 {
		return &Error{Key: "content_scanner_blocked_types", Reason: "give content_scanner_allowed_types or content_scanner_blocked_types, not both"}
	}
	for key, types := range map[string][]string{"content_scanner_allowed_types": c.ContentScannerAllowedTypes, "content_scanner_blocked_types": c.ContentScannerBlockedTypes} {
		for _, t := range types {
			typ, sub, ok := strings.Cut(t, "/")
			if !ok || typ == "" || sub == "" || strings.ContainsAny(t, " ;,") || strings.Count(t, "/") != 1 {
				return &Error{Key: key, Reason: fmt.Sprintf("%q is not a MIME type (type/subtype or type/*)", t)}
			}
		}
	}
	if c.ThumbnailMaxPixels < 1 {
		return &Error{Key: "thumbnail_max_pixels", Reason: "must be positive"}
	}
	return nil
}

// MediaPath is the media directory: media_dir, or data_dir/media.
func (c *Config) MediaPath() string {
	if c.MediaDir != "" {
		return c.MediaDir
	}
	return filepath.Join(c.DataDir, "media")
}

// SQLitePath is the database file when no PostgreSQL URL is configured.
func (c *Config) SQLitePath() string {
	if strings.HasPrefix(c.Database, "sqlite:") {
		return strings.TrimPrefix(c.Database, "sqlite:")
	}
	return filepath.Join(c.DataDir, "conclave.db")
}

type field struct {
	key, flag, env, help string
	v                    reflect.Value
}

func fieldsOf(cfg *Config) []field {
	rv := reflect.ValueOf(cfg).Elem()
	rt := rv.Type()
	out := make([]field, 0, rt.NumField())
	for i := 0; i < rt.NumField(); i++ {
		sf := rt.Field(i)
		key := sf.Tag.Get("yaml")
		out = append(out, field{
			key:  key,
			flag: strings.ReplaceAll(key, "_", "-"),
			env:  "CONCLAVE_" + strings.ToUpper(key),
			help: sf.Tag.Get("help"),
			v:    rv.Field(i),
		})
	}
	return out
}

func (f field) setText(s string) error {
	switch p := f.v.Addr().Interface().(type) {
	case *string:
		*p = s
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("must be true or false")
		}
		*p = b
	case *int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("must be an integer")
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("must be an integer")
		}
		*p = n
	case *float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("must be a number")
		}
		*p = n
	case *Duration:
		if err := p.UnmarshalText([]byte(s)); err != nil {
			return errors.New("must be a duration such as 30s, 5m or 90d")
		}
	case *[]string:
		*p = cleanList(strings.Split(s, ","))
	default:
		return fmt.Errorf("unsupported type %T", p)
	}
	return nil
}

func (f field) text() string {
	switch p := f.v.Addr().Interface().(type) {
	case *Duration:
		return p.String()
	case *[]string:
		return strings.Join(*p, ",")
	default:
		return fmt.Sprint(f.v.Interface())
	}
}

// cleanList trims the items of a list setting and drops empty ones; nil
// when none is left.
func cleanList(items []string) []string {
	var out []string
	for _, it := range items {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
