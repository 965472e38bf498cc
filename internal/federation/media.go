package federation

import (
	"context"
	"errors"
	"net/http"
	"time"

	"conclave/internal/fedclient"
	"conclave/internal/matrix"
	"conclave/internal/media"
	"conclave/internal/outbound"
)

// FetchMedia fetches another server's media for the media repository
// (media.Fetcher) through the authenticated federation endpoint (spec
// v1.11, GET /_matrix/federation/v1/media/download/{mediaId}), and turns
// the other server's refusals into the answers our clients get: its 404 is
// ours, its 504 M_NOT_YET_UPLOADED too (it waited as long as asked), its
// M_TOO_LARGE is 502 M_TOO_LARGE, anything else 502 (Synapse: "Failed to
// fetch remote media"). A server outside federation_allow is never
// contacted: 403 M_FORBIDDEN.
func (s *Service) FetchMedia(ctx context.Context, origin, mediaID string, wait time.Duration, maxBytes int64, fn func(*media.Remote) error) error {
	take := func(m *fedclient.Media) error {
		return fn(&media.Remote{ContentType: m.ContentType, Filename: media.FilenameFromDisposition(m.Disposition), Length: m.Length, Body: m.Body})
	}
	err := s.Client.DownloadMedia(ctx, origin, mediaID, wait.Milliseconds(), maxBytes, take)
	if err == nil {
		return nil
	}
	if unsupportedEndpoint(err) {
		// A server from before spec v1.11 (no authenticated federation
		// media): its old download endpoint, as Synapse falls back to.
		err = s.Client.DownloadMediaLegacy(ctx, origin, mediaID, wait.Milliseconds(), maxBytes, take)
		if err == nil {
			return nil
		}
	}
	if _, ok := matrix.AsError(err); ok {
		return err // fn's own answer
	}
	var na *outbound.NotAllowedError
	if errors.As(err, &na) {
		return na.MatrixError()
	}
	var fe *fedclient.Error
	if errors.As(err, &fe) {
		switch {
		case fe.Status == http.StatusNotFound:
			return matrix.NotFound("Remote media not found")
		case fe.Status == http.StatusGatewayTimeout && fe.Errcode == matrix.ErrNotYetUploaded:
			return matrix.Errorf(http.StatusGatewayTimeout, matrix.ErrNotYetUploaded, "Media has not been uploaded yet")
		case fe.Errcode == matrix.ErrTooLarge:
			return matrix.Errorf(http.StatusBadGateway, matrix.ErrTooLarge, "Remote media is too large")
		}
	}
	if errors.Is(err, outbound.ErrTooLarge) {
		return matrix.Errorf(http.StatusBadGateway, matrix.ErrTooLarge, "Remote media is larger than this server accepts")
	}
	s.Log.Warn("federation: fetching remote media", "origin", origin, "media_id", mediaID, "err", err)
	return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "Failed to fetch remote media")
}

// unsupportedEndpoint: the other server answered as one that does not know
// the endpoint (404 or 405 with M_UNRECOGNIZED or no Matrix error at all,
// 400 without a Matrix error, 501), not as one refusing the media.
func unsupportedEndpoint(err error) bool {
	var fe *fedclient.Error
	if !errors.As(err, &fe) {
		return false
	}
	switch fe.Status {
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fe.Errcode == "" || fe.Errcode == matrix.ErrUnrecognized
	case http.StatusBadRequest:
		return fe.Errcode == "" || fe.Errcode == matrix.ErrUnrecognized
	case http.StatusNotImplemented:
		return true
	}
	return false
}
