package homeserver

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"conclave/internal/clamd"
	"conclave/internal/config"
	"conclave/internal/contentscan"
	"conclave/internal/media"
	"conclave/internal/outbound"
	"conclave/internal/store"
	"conclave/internal/urlpreview"
)

// newMedia builds the media repository from the configuration and starts
// the orphan cleanup in the background.
func newMedia(ctx context.Context, cfg *config.Config, st store.MediaStore, log *slog.Logger) (*media.Service, error) {
	storage, err := media.NewFileStorage(cfg.MediaPath())
	if err != nil {
		return nil, fmt.Errorf("media dir: %w", err)
	}
	opt := media.Options{
		ServerName:         cfg.ServerName,
		MaxUploadBytes:     cfg.MaxUploadBytes,
		ThumbnailMaxPixels: cfg.ThumbnailMaxPixels,
		AcceptUnscanned:    cfg.ClamdUnreachable == "accept",
		LegacyFreeze:       cfg.LegacyMediaFreeze,
		RateLimit:          cfg.RateLimits,
		Log:                log,
	}
	if cfg.ClamdAddress != "" {
		c, err := clamd.Parse(cfg.ClamdAddress)
		if err != nil {
			return nil, err
		}
		if err := c.Ping(ctx); err != nil {
			log.Warn("clamd does not answer; uploads are "+map[bool]string{true: "accepted unscanned", false: "refused"}[opt.AcceptUnscanned]+" until it does", "err", err)
		}
		opt.Scanner = c
	}
	svc := media.New(st, storage, opt)
	svc.StartOrphanCleanup(context.WithoutCancel(ctx))
	return svc, nil
}

// urlPreview builds the URL preview service when url_preview is on: its own
// outbound client (sites are not federation: the closed circle's allow list
// does not apply, the private-address policy does), images stored as media
// uploads of the asking user.
func (hs *Homeserver) urlPreview() *urlpreview.Service {
	if !hs.Config.URLPreview {
		return nil
	}
	var cas []*x509.Certificate
	if hs.TLS != nil {
		cas = hs.TLS.CACerts
	}
	oc := outbound.New(outbound.Config{AllowPrivate: hs.Config.URLPreviewAllowPrivate, ExtraCAs: cas, Timeout: 30 * time.Second})
	store := func(ctx context.Context, userID string, body []byte, contentType, filename string) (string, error) {
		return hs.Media.Upload(ctx, userID, media.Upload{Body: bytes.NewReader(body), ContentLength: int64(len(body)), ContentType: contentType, Filename: filename})
	}
	return urlpreview.New(oc.Redirecting(urlpreview.MaxRedirects, urlpreview.CheckRedirect), store, hs.Media.MaxUploadBytes())
}

// contentScanner builds the content scanner when content_scanner is on:
// its key pair is derived from the signing key (shared by every process,
// kept across restarts), and it scans with its own clamd client, whatever
// clamd_unreachable says of uploads (a scan never answers without a
// verdict).
func (hs *Homeserver) contentScanner() (*contentscan.Service, error) {
	if !hs.Config.ContentScanner {
		return nil, nil
	}
	c, err := clamd.Parse(hs.Config.ClamdAddress)
	if err != nil {
		return nil, err
	}
	key, err := contentscan.DeriveKey(hs.SigningKey.Private.Seed())
	if err != nil {
		return nil, err
	}
	return contentscan.New(contentscan.Options{Media: hs.Media, Scanner: c, Key: key, Log: hs.Log,
		AllowedTypes: hs.Config.ContentScannerAllowedTypes, BlockedTypes: hs.Config.ContentScannerBlockedTypes}), nil
}
