package config

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestMediaConfig(t *testing.T) {
	d := Default()
	if d.MaxUploadBytes != 50<<20 || d.ClamdUnreachable != "refuse" || d.ThumbnailMaxPixels <= 0 || d.LegacyMediaFreeze || d.URLPreview || d.ClamdAddress != "" {
		t.Fatalf("media defaults %+v", d)
	}
	if got := d.MediaPath(); got != filepath.Join(d.DataDir, "media") {
		t.Fatalf("MediaPath default %q", got)
	}
	cfg, err := Load([]string{"--media-dir", "/srv/media", "--clamd-address", "unix:/run/clamd.sock", "--clamd-unreachable", "accept", "--legacy-media-freeze=true"}, func(string) string { return "" })
	if err != nil || cfg.MediaPath() != "/srv/media" || cfg.ClamdAddress != "unix:/run/clamd.sock" || cfg.ClamdUnreachable != "accept" || !cfg.LegacyMediaFreeze {
		t.Fatalf("%+v %v", cfg, err)
	}
	if cfg, err := Load([]string{"--url-preview=true", "--url-preview-allow-private-addresses=true"}, func(string) string { return "" }); err != nil || !cfg.URLPreview || !cfg.URLPreviewAllowPrivate {
		t.Fatalf("url preview flags: %+v %v", cfg, err)
	}
	bad := map[string][]string{
		"max_upload_bytes":     {"--max-upload-bytes", "0"},
		"clamd_address":        {"--clamd-address", "localhost:3310"},
		"clamd_unreachable":    {"--clamd-unreachable", "maybe"},
		"thumbnail_max_pixels": {"--thumbnail-max-pixels", "-1"},
	}
	for key, args := range bad {
		_, err := Load(args, func(string) string { return "" })
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != key {
			t.Errorf("%v: err %v, want key %s", args, err, key)
		}
	}
}
