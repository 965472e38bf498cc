package keys

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"conclave/internal/matrix"
	"conclave/internal/store"
)

// Dehydrated devices, MSC3814 (unstable prefix org.matrix.msc3814.v1): one
// offline device per user whose to-device messages wait until a new login
// rehydrates it.

// DehydratedDeviceRequest is the body of PUT .../dehydrated_device.
type DehydratedDeviceRequest struct {
	DeviceID    string          `json:"device_id"`
	DeviceData  json.RawMessage `json:"device_data"`
	DisplayName *string         `json:"initial_device_display_name"`
	UploadRequest
}

// PutDehydratedDevice replaces the user's dehydrated device.
func (s *Service) PutDehydratedDevice(ctx context.Context, userID string, req *DehydratedDeviceRequest) error {
	if req.DeviceID == "" || len(req.DeviceID) > 255 {
		return matrix.MissingParam("device_id is required")
	}
	if len(req.DeviceData) == 0 || req.DeviceData[0] != '{' {
		return matrix.BadJSON("device_data must be an object")
	}
	data, err := Canonical(req.DeviceData)
	if err != nil {
		return matrix.BadJSON("device_data: %v", err)
	}
	up, err := s.prepareUpload(ctx, userID, req.DeviceID, &req.UploadRequest)
	if err != nil {
		return err
	}
	// The device gets a token nobody knows: it cannot be used to log in.
	hash := make([]byte, 32)
	rand.Read(hash)
	wctx, done := s.deviceChange(ctx, userID)
	w := s.Changes.Begin(keyCounts(userID)...)
	err = s.store.PutDehydratedDevice(wctx, userID, req.DeviceID, req.DisplayName, data, up, time.Now().UnixMilli(), hash)
	w.Done(0)
	done(err == nil)
	if errors.Is(err, store.ErrConflict) {
		return matrix.InvalidParam("Device ID %s is already in use", req.DeviceID)
	}
	return uploadError(req.DeviceID, err)
}

// DehydratedDevice returns the user's dehydrated device ID and data.
func (s *Service) DehydratedDevice(ctx context.Context, userID string) (string, json.RawMessage, error) {
	id, data, err := s.store.DehydratedDevice(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil, matrix.NotFound("No dehydrated device")
	}
	return id, data, err
}

// DeleteDehydratedDevice deletes the user's dehydrated device.
func (s *Service) DeleteDehydratedDevice(ctx context.Context, userID string) (string, error) {
	wctx, done := s.deviceChange(ctx, userID)
	w := s.Changes.Begin(keyCounts(userID)...)
	id, err := s.store.DeleteDehydratedDevice(wctx, userID)
	w.Done(0)
	done(err == nil)
	if errors.Is(err, store.ErrNotFound) {
		return "", matrix.NotFound("No dehydrated device")
	}
	return id, err
}

// DehydratedEvents returns the to-device messages of the user's dehydrated
// device after nextBatch (""), deleting those up to it.
func (s *Service) DehydratedEvents(ctx context.Context, userID, deviceID, nextBatch string) ([]json.RawMessage, string, error) {
	id, _, err := s.store.DehydratedDevice(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && id != deviceID) {
		return nil, "", matrix.Errorf(http.StatusForbidden, matrix.ErrForbidden, "%s is not your dehydrated device", deviceID)
	}
	if err != nil {
		return nil, "", err
	}
	var after int64
	if nextBatch != "" {
		if after, err = strconv.ParseInt(nextBatch, 10, 64); err != nil || after < 0 {
			return nil, "", matrix.InvalidParam("Invalid next_batch")
		}
	}
	msgs, err := s.store.ToDeviceMessages(ctx, userID, deviceID, after, after, math.MaxInt64, MaxToDeviceBatch)
	if err != nil {
		return nil, "", err
	}
	out := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		out[i] = m.JSON
		after = m.Pos
	}
	return out, strconv.FormatInt(after, 10), nil
}
