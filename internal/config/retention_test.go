package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRetentionConfig(t *testing.T) {
	d := Default()
	if d.Retention || d.RetentionDefaultMaxLifetime.Duration != 0 || d.RetentionPurgeInterval.Duration != time.Hour {
		t.Fatalf("retention defaults %+v", d)
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("retention: true\nretention_default_max_lifetime: 4320h\nretention_allowed_lifetime_max: 8760h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CONCLAVE_RETENTION_ALLOWED_LIFETIME_MIN": "24h"}
	cfg, err := Load([]string{"--config", file, "--retention-purge-interval", "10m"}, func(k string) string { return env[k] })
	if err != nil || !cfg.Retention || cfg.RetentionDefaultMaxLifetime.Duration != 4320*time.Hour || cfg.RetentionAllowedLifetimeMin.Duration != 24*time.Hour ||
		cfg.RetentionAllowedLifetimeMax.Duration != 8760*time.Hour || cfg.RetentionPurgeInterval.Duration != 10*time.Minute {
		t.Fatalf("%+v %v", cfg, err)
	}
	bad := map[string][]string{
		"retention_default_max_lifetime": {"--retention-default-max-lifetime", "-1h"},
		"retention_allowed_lifetime_min": {"--retention-allowed-lifetime-min", "48h", "--retention-allowed-lifetime-max", "24h"},
		"retention_purge_interval":       {"--retention-purge-interval", "10ms"},
	}
	for key, args := range bad {
		_, err := Load(args, func(string) string { return "" })
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%v: err %v, want key %s", args, err, key)
		}
	}
}
