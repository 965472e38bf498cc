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
