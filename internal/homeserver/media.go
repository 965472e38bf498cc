package homeserver

import (
	"context"
	"fmt"
	"log/slog"

	"conclave/internal/clamd"
	"conclave/internal/config"
	"conclave/internal/media"
	"conclave/internal/store"
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
