package store

import (
	"context"
	"encoding/json"
)

// DeviceListEntry is one device of a user as servers tell each other of it
// (m.device_list_update, /user/devices).
type DeviceListEntry struct {
	DeviceID    string
	DisplayName *string
	Keys        json.RawMessage // nil: the device uploaded no keys
}

// DeviceLists keeps what crosses servers about device lists (migration
// 0020): what was last announced of local users' devices, and the cached
// device lists of remote users.
type DeviceLists interface {
	// LocalDeviceList lists a local user's devices with their uploaded keys
	// (without stored signatures), by device ID.
	LocalDeviceList(ctx context.Context, userID string) ([]DeviceListEntry, error)
	// DeviceListOutbound is what was last announced of userID's devices
	// (device ID → hash) and the last stream_id used.
	DeviceListOutbound(ctx context.Context, userID string) (map[string]string, int64, error)
	// SetDeviceListOutbound records announced devices (hash "" deletes the
	// entry), the new last stream_id and the position of the last device
	// list change the announcement covers, atomically.
	SetDeviceListOutbound(ctx context.Context, userID string, hashes map[string]string, streamID, announcedPos int64) error
	// LastDeviceListChange is the position of userID's last device list change (0: none).
	LastDeviceListChange(ctx context.Context, userID string) (int64, error)
	// UnannouncedDeviceLists lists local users (rows of users) with a device
	// list change above the last position announced for them.
	UnannouncedDeviceLists(ctx context.Context) ([]string, error)

	// RemoteDeviceList returns a remote user's cached devices and
	// cross-signing keys (type → JSON) and the stream_id they are complete
	// as of; cached is false when the user's list is not cached.
	RemoteDeviceList(ctx context.Context, userID string) (devices []DeviceListEntry, crossSigning map[string]json.RawMessage, streamID int64, cached bool, err error)
	// ReplaceRemoteDeviceList caches a remote user's whole list (a resync)
	// and records a device list change for the user, atomically.
	ReplaceRemoteDeviceList(ctx context.Context, userID string, streamID int64, devices []DeviceListEntry, crossSigning map[string]json.RawMessage) error
	// UpdateRemoteDevice records a device list change for a remote user and,
	// when the user's list is cached as of an earlier stream_id, applies one
	// device's update (deleted: removed) and moves it to streamID. applied
	// reports whether the cache took it.
	UpdateRemoteDevice(ctx context.Context, userID string, streamID int64, dev DeviceListEntry, deleted bool) (applied bool, err error)
	// PutRemoteCrossSigningKeys records a device list change for a remote
	// user and, when the user's list is cached, replaces the given keys.
	PutRemoteCrossSigningKeys(ctx context.Context, userID string, keys map[string]json.RawMessage) error
	// DropRemoteDeviceLists forgets the cached lists of these users.
	DropRemoteDeviceLists(ctx context.Context, userIDs []string) error
	// DropUnsharedRemoteDeviceLists forgets the cached list of every remote
	// user no local user (a row of users) shares a joined room with, and
	// returns them.
	DropUnsharedRemoteDeviceLists(ctx context.Context) ([]string, error)
	// RecordDeviceListChanges records a device list change for users (whose
	// lists are not cached here) so that /sync reports it.
	RecordDeviceListChanges(ctx context.Context, userIDs []string) error
}
