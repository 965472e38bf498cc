package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("server_name: ${SN}\nlisten: 0.0.0.0:1\ndata_dir: /from/file\nenable_registration: true\n"), 0o600)
	env := map[string]string{"SN": "file.example", "CONCLAVE_LISTEN": "0.0.0.0:2", "CONCLAVE_DATA_DIR": "/from/env"}
	cfg, err := Load([]string{"--config", file, "--data-dir", "/from/flag"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ServerName != "file.example" || cfg.Listen != "0.0.0.0:2" || cfg.DataDir != "/from/flag" || !cfg.EnableRegistration {
		t.Fatalf("got %+v", cfg)
	}
	if cfg.MaxRequestBytes != Default().MaxRequestBytes {
		t.Fatal("default lost")
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		file string
		args []string
		key  string
	}{
		"unknown key":   {"bogus: 1\n", nil, "bogus"},
		"bad bool":      {"enable_registration: maybe\n", nil, "enable_registration"},
		"bad server":    {"server_name: \"bad name\"\n", nil, "server_name"},
		"bad flag":      {"", []string{"--no-such-flag"}, "flags"},
		"bad flag type": {"", []string{"--rate-limits=sometimes"}, "--rate-limits"},
		"bad yaml":      {"listen: [1\n", nil, "c.yaml"},
	}
	for name, c := range cases {
		file := filepath.Join(dir, "c.yaml")
		os.WriteFile(file, []byte(c.file), 0o600)
		_, err := Load(append([]string{"--config", file}, c.args...), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%s: error %v does not name %q", name, err, c.key)
		}
	}
}

func TestBoolFlagsTakeNoValue(t *testing.T) {
	cfg, err := Load([]string{"--enable-registration", "--listen", "127.0.0.1:9", "--rate-limits=false"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.EnableRegistration || cfg.Listen != "127.0.0.1:9" || cfg.RateLimits {
		t.Fatalf("got %+v", cfg)
	}
}

// The admin listener is off by default; once set, the profiler is on unless
// admin_pprof turns it off, from any source.
func TestAdminListenAndPprof(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminListen != "" || !cfg.AdminPprof {
		t.Fatalf("defaults: admin_listen %q admin_pprof %v", cfg.AdminListen, cfg.AdminPprof)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("admin_listen: 127.0.0.1:9100\nadmin_pprof: false\n"), 0o600)
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flags": {args: []string{"--admin-listen", "127.0.0.1:9100", "--admin-pprof=false"}},
		"env":   {env: map[string]string{"CONCLAVE_ADMIN_LISTEN": "127.0.0.1:9100", "CONCLAVE_ADMIN_PPROF": "false"}},
		"file":  {args: []string{"--config", file}},
	} {
		cfg, err := Load(c.args, func(k string) string { return c.env[k] })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if cfg.AdminListen != "127.0.0.1:9100" || cfg.AdminPprof {
			t.Errorf("%s: admin_listen %q admin_pprof %v", name, cfg.AdminListen, cfg.AdminPprof)
		}
	}
	// A flag beats the file; a bare bool flag means true.
	cfg, err = Load([]string{"--config", file, "--admin-pprof"}, none)
	if err != nil || !cfg.AdminPprof {
		t.Fatalf("--admin-pprof over file: %v %v", cfg.AdminPprof, err)
	}
	if _, err := Load([]string{"--admin-pprof=sometimes"}, none); err == nil || !strings.Contains(err.Error(), "--admin-pprof") {
		t.Fatalf("bad bool: %v", err)
	}
	if !strings.Contains(Usage(), "--admin-pprof") || !strings.Contains(Usage(), "CONCLAVE_ADMIN_PPROF") {
		t.Fatal("usage does not list --admin-pprof")
	}
}

// appservice_dir was accepted and never read; it is refused until
// application services exist, so no operator believes a bridge is registered.
func TestAppserviceDirRefused(t *testing.T) {
	_, err := Load([]string{"--appservice-dir", "/etc/conclave/appservices"}, func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "appservice_dir") || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("appservice_dir: %v", err)
	}
}

// trusted_proxies and the per-user limits come from flags, env and file like
// every setting, and bad values name their key.
func TestTrustedProxiesAndLimits(t *testing.T) {
	env := map[string]string{"CONCLAVE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1", "CONCLAVE_EVENT_RATE_BURST": "99"}
	cfg, err := Load([]string{"--search-rate-per-second", "2.5"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ps, err := cfg.TrustedProxyPrefixes()
	if err != nil || len(ps) != 3 || ps[0].String() != "10.0.0.0/8" || ps[1].String() != "192.0.2.7/32" || ps[2].String() != "::1/128" {
		t.Fatalf("trusted proxies %v %v", ps, err)
	}
	if cfg.EventRateBurst != 99 || cfg.SearchRatePerSecond != 2.5 || cfg.FullSyncRateBurst != Default().FullSyncRateBurst {
		t.Fatalf("limits: %+v", cfg)
	}
	none := func(string) string { return "" }
	for args, key := range map[string]string{
		"--trusted-proxies=10.0.0.0/33":         "trusted_proxies",
		"--trusted-proxies=proxy.example":       "trusted_proxies",
		"--event-rate-per-second=0":             "event_rate_per_second",
		"--invite-rate-burst=0":                 "invite_rate_burst",
		"--full-sync-rate-per-second=-1":        "full_sync_rate_per_second",
		"--user-directory-rate-per-second=+Inf": "user_directory_rate_per_second",
		"--create-room-rate-per-second=NaN":     "create_room_rate_per_second",
		"--login-rate-burst=0":                  "login_rate_burst",
	} {
		if _, err := Load([]string{args}, none); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: error %v does not name %s", args, err, key)
		}
	}
}

// federation_allow is a list from flags, env ("a,b") or the file (a YAML
// list or "a,b"); every entry must be a server name, port allowed.
func TestFederationAllow(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none)
	if err != nil || cfg.FederationAllow != nil || cfg.FederationAllowPrivate {
		t.Fatalf("defaults: %v %v %v", cfg.FederationAllow, cfg.FederationAllowPrivate, err)
	}
	want := []string{"hs1.example", "localhost:8449", "[::1]:8448"}
	dir := t.TempDir()
	list := filepath.Join(dir, "list.yaml")
	os.WriteFile(list, []byte("federation_allow:\n  - hs1.example\n  - \"localhost:8449\"\n  - \"[::1]:8448\"\nfederation_allow_private_addresses: true\n"), 0o600)
	scalar := filepath.Join(dir, "scalar.yaml")
	os.WriteFile(scalar, []byte("federation_allow: \"hs1.example, localhost:8449,[::1]:8448\"\nfederation_allow_private_addresses: true\n"), 0o600)
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flags":       {args: []string{"--federation-allow", "hs1.example,localhost:8449,,[::1]:8448", "--federation-allow-private-addresses"}},
		"env":         {env: map[string]string{"CONCLAVE_FEDERATION_ALLOW": " hs1.example , localhost:8449,[::1]:8448", "CONCLAVE_FEDERATION_ALLOW_PRIVATE_ADDRESSES": "true"}},
		"yaml list":   {args: []string{"--config", list}},
		"yaml scalar": {args: []string{"--config", scalar}},
	} {
		cfg, err := Load(c.args, func(k string) string { return c.env[k] })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if strings.Join(cfg.FederationAllow, "|") != strings.Join(want, "|") || !cfg.FederationAllowPrivate {
			t.Errorf("%s: %q %v", name, cfg.FederationAllow, cfg.FederationAllowPrivate)
		}
	}
	// A flag replaces the file's list.
	cfg, err = Load([]string{"--config", list, "--federation-allow", "other.example"}, none)
	if err != nil || len(cfg.FederationAllow) != 1 || cfg.FederationAllow[0] != "other.example" {
		t.Fatalf("flag over file: %q %v", cfg.FederationAllow, err)
	}
	for _, bad := range []string{"bad name", "host:99999", "a.example,host:", "https://a.example"} {
		if _, err := Load([]string{"--federation-allow", bad}, none); err == nil || !strings.Contains(err.Error(), "federation_allow") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	nested := filepath.Join(dir, "nested.yaml")
	os.WriteFile(nested, []byte("federation_allow:\n  - [a]\n"), 0o600)
	if _, err := Load([]string{"--config", nested}, none); err == nil || !strings.Contains(err.Error(), "federation_allow") {
		t.Errorf("nested list: %v", err)
	}
	if u := Usage(); !strings.Contains(u, "--federation-allow\n") || !strings.Contains(u, "CONCLAVE_FEDERATION_ALLOW_PRIVATE_ADDRESSES") {
		t.Error("usage does not list the federation flags")
	}
}

// trusted_key_servers is a list like federation_allow; each entry must be a
// server name inside federation_allow when that is set.
func TestTrustedKeyServers(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := Load(nil, none)
	if err != nil || cfg.TrustedKeyServers != nil {
		t.Fatalf("defaults: %v %v", cfg.TrustedKeyServers, err)
	}
	want := []string{"a.example", "b.example:8449"}
	yml := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(yml, []byte("trusted_key_servers:\n  - a.example\n  - \"b.example:8449\"\n"), 0o600)
	for name, c := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"flag":              {args: []string{"--trusted-key-servers", "a.example, b.example:8449"}},
		"env":               {env: map[string]string{"CONCLAVE_TRUSTED_KEY_SERVERS": "a.example,b.example:8449"}},
		"yaml":              {args: []string{"--config", yml}},
		"inside the circle": {args: []string{"--trusted-key-servers", "a.example,b.example:8449", "--federation-allow", "A.example,b.example:8449,c.example"}},
	} {
		cfg, err := Load(c.args, func(k string) string { return c.env[k] })
		if err != nil || strings.Join(cfg.TrustedKeyServers, "|") != strings.Join(want, "|") {
			t.Errorf("%s: %q %v", name, cfg.TrustedKeyServers, err)
		}
	}
	for _, args := range [][]string{
		{"--trusted-key-servers", "bad name"},
		{"--trusted-key-servers", "https://a.example"},
		{"--trusted-key-servers", "a.example,d.example", "--federation-allow", "a.example,b.example"},
	} {
		if _, err := Load(args, none); err == nil || !strings.Contains(err.Error(), "trusted_key_servers") {
			t.Errorf("%q: %v", args, err)
		}
	}
	_, err = Load([]string{"--trusted-key-servers", "d.example", "--federation-allow", "a.example"}, none)
	if err == nil || !strings.Contains(err.Error(), "not in federation_allow") {
		t.Errorf("outside the circle: %v", err)
	}
}
