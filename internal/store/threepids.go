package store

import "context"

// ThreepidSession is an e-mail validation session: requestToken created it
// and mailed a token; submit_token (or the link) validates it; a UIA stage,
// a password reset or an added address then uses it.
type ThreepidSession struct {
	SID          string
	ClientSecret string
	Medium       string // "email"
	Address      string // canonical
	// Purpose is what the session was requested for ("register",
	// "password", "add"): a session proves an address for that only.
	Purpose     string
	SendAttempt int
	TokenHash   []byte // SHA-256 of the mailed token
	Failures    int    // wrong tokens submitted
	CreatedTS   int64  // ms
	// TokenExpiresTS: the token is refused after it; ExpiresTS: the
	// session (validated or not) is unusable after it.
	TokenExpiresTS int64
	ExpiresTS      int64
	ValidatedTS    int64 // 0 until validated
}

// Threepid is an address bound to an account.
type Threepid struct {
	UserID      string
	Medium      string
	Address     string
	ValidatedTS int64
	AddedTS     int64
	// LookupHash is the identity lookup hash of the address
	// (internal/threepid): base64url(sha256(address medium pepper)).
	LookupHash string
}

// ThreepidInvite is an invitation sent to an address that had no account:
// it lets an external register, and makes /info answer invited.
type ThreepidInvite struct {
	Medium, Address string
	RoomID          string
	Sender          string // the inviter's user ID
	// Token is the state key of the m.room.third_party_invite the
	// inviter's server wrote ("" in the record of another server).
	Token     string
	CreatedTS int64
}

// Threepids keeps validation sessions, bound addresses and invites to
// addresses (migrations 0029, 0030).
type Threepids interface {
	// StartThreepidSession stores s as a new session, unless a session of
	// the same client secret, medium, address and purpose exists: then, if
	// s.SendAttempt is not above its attempt, that session is returned with
	// resend false and nothing changes; otherwise its token, attempt,
	// failures and expiries are replaced by s's (same SID) and resend is
	// true. For a new session resend is true too.
	StartThreepidSession(ctx context.Context, s *ThreepidSession) (got *ThreepidSession, resend bool, err error)
	// ThreepidSession returns a session (ErrNotFound if none).
	ThreepidSession(ctx context.Context, sid string) (*ThreepidSession, error)
	// ThreepidTokenFailed counts a wrong token and returns the count.
	ThreepidTokenFailed(ctx context.Context, sid string) (int, error)
	// ValidateThreepidSession marks the session validated at ts (once:
	// a second call keeps the first time).
	ValidateThreepidSession(ctx context.Context, sid string, ts int64) error
	// DeleteExpiredThreepidSessions removes sessions expired before ts.
	DeleteExpiredThreepidSessions(ctx context.Context, ts int64) error

	// AddThreepid binds an address: ErrConflict if another user has it; a
	// second add by the same user updates nothing.
	AddThreepid(ctx context.Context, t *Threepid) error
	// UserThreepids lists a user's addresses, oldest first.
	UserThreepids(ctx context.Context, userID string) ([]Threepid, error)
	// DeleteThreepid unbinds an address of the user; false if it was not
	// theirs.
	DeleteThreepid(ctx context.Context, userID, medium, address string) (bool, error)
	// UserByThreepid returns the user an address is bound to (ErrNotFound).
	UserByThreepid(ctx context.Context, medium, address string) (string, error)
	// UsersByLookupHash returns, for the hashes given that match a bound
	// address, the users (hash → user ID). At most 1000 hashes.
	UsersByLookupHash(ctx context.Context, hashes []string) (map[string]string, error)

	// AddThreepidInvite records an invite (one per address, room and sender).
	AddThreepidInvite(ctx context.Context, inv *ThreepidInvite) error
	// ThreepidInvites lists the invites to an address, oldest first (at
	// most 100).
	ThreepidInvites(ctx context.Context, medium, address string) ([]ThreepidInvite, error)
	// DeleteThreepidInvites forgets the invites to an address.
	DeleteThreepidInvites(ctx context.Context, medium, address string) error

	// PutOpenIDToken stores an OpenID token (its hash) of userID valid
	// until expires (ms), and forgets tokens expired at now.
	PutOpenIDToken(ctx context.Context, hash []byte, userID string, expires, now int64) error
	// OpenIDTokenUser returns the user of a token still valid at now
	// (ErrNotFound).
	OpenIDTokenUser(ctx context.Context, hash []byte, now int64) (string, error)
	// PutIdentityToken stores an identity service token (its hash).
	PutIdentityToken(ctx context.Context, hash []byte, userID string, ts int64) error
	// IdentityTokenUser returns the user of an identity token (ErrNotFound).
	IdentityTokenUser(ctx context.Context, hash []byte) (string, error)
	// DeleteIdentityToken forgets an identity token.
	DeleteIdentityToken(ctx context.Context, hash []byte) error
}
