package store

import "context"

// User is an account on this server.
type User struct {
	UserID       string
	PasswordHash string // empty: no password login
	IsAdmin      bool
	IsGuest      bool
	Deactivated  bool
	CreatedTS    int64
}

// Device is one login session of a user.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName *string
	CreatedTS   int64
	LastSeenTS  int64
	LastSeenIP  string
}

// Session is what an access token resolves to.
type Session struct {
	UserID    string
	DeviceID  string
	IsGuest   bool
	IsAdmin   bool
	ExpiresTS int64 // 0: never
	// RefreshPending: the token came from POST /refresh and the refresh token
	// it replaced is still usable; ConfirmRefresh revokes that one.
	RefreshPending bool
}

// DeviceSeen is a sighting of a device: a request with its token at TS
// (Unix ms) from IP.
type DeviceSeen struct {
	UserID, DeviceID, IP string
	TS                   int64
}

// NewToken is a token to store: only its hash is kept.
type NewToken struct {
	AccessHash  []byte
	RefreshHash []byte // nil: no refresh token
	ExpiresTS   int64  // 0: the access token never expires
}

// Accounts keeps users, devices and their tokens.
type Accounts interface {
	// CreateUser inserts a user (ErrConflict if the ID is taken, case-insensitively).
	CreateUser(ctx context.Context, u *User) error
	GetUser(ctx context.Context, userID string) (*User, error)
	// UserIDCaseless returns the stored user ID equal to userID ignoring
	// case (ErrNotFound if none).
	UserIDCaseless(ctx context.Context, userID string) (string, error)
	// UserIDTaken reports whether a user ID is taken, ignoring case.
	UserIDTaken(ctx context.Context, userID string) (bool, error)
	SetPassword(ctx context.Context, userID, hash string, logoutExceptDevice *string) error
	// Deactivate marks the user deactivated, deletes devices and tokens, and
	// clears the password, in one transaction.
	Deactivate(ctx context.Context, userID string) error

	// CreateDevice creates or replaces a device and stores a token for it, in
	// one transaction. A replaced device keeps its keys but loses old tokens.
	CreateDevice(ctx context.Context, d *Device, tok NewToken) error
	GetDevice(ctx context.Context, userID, deviceID string) (*Device, error)
	ListDevices(ctx context.Context, userID string) ([]Device, error)
	SetDeviceName(ctx context.Context, userID, deviceID, name string) error
	// DeleteDevices removes devices with their tokens (and, through the keys
	// store, their keys and pending to-device messages).
	DeleteDevices(ctx context.Context, userID string, deviceIDs []string) error
	// DeleteAllDevices removes every device of the user, like DeleteDevices.
	DeleteAllDevices(ctx context.Context, userID string) error
	// TouchDevices records when and from where devices were last seen, in
	// one transaction; devices that no longer exist are skipped.
	TouchDevices(ctx context.Context, seen []DeviceSeen) error

	// SessionByToken resolves an access token hash.
	SessionByToken(ctx context.Context, accessHash []byte) (*Session, error)
	// RotateRefreshToken exchanges a refresh token hash for the new pair on
	// the same device; ErrNotFound if the refresh token is unknown. The old
	// access token goes at once; the old refresh token stays usable until
	// the new pair is first used (ConfirmRefresh), and using it again
	// replaces the unused pair it had produced.
	RotateRefreshToken(ctx context.Context, refreshHash []byte, tok NewToken, now int64) (*Session, error)
	// ConfirmRefresh revokes the refresh token that accessHash's pair replaced.
	ConfirmRefresh(ctx context.Context, accessHash []byte) error
	DeleteToken(ctx context.Context, accessHash []byte) error
}
