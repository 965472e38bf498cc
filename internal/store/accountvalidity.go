package store

import "context"

// AccountValidity is when an account expires (external users,
// --external-account-validity; migration 0032).
type AccountValidity struct {
	UserID       string
	ExpirationTS int64 // ms
	// RenewalEmails: renewal mails are sent to this account (the admin API's
	// enable_renewal_emails).
	RenewalEmails bool
	// MailSentTS: when the last renewal mail went out for the current
	// period (0: none yet).
	MailSentTS int64
}

// AccountValidities keeps account expiry and renewal tokens.
type AccountValidities interface {
	// EnsureAccountValidity returns the user's validity, first recording
	// expirationTS (with renewal mails on) if the user had none.
	EnsureAccountValidity(ctx context.Context, userID string, expirationTS int64) (*AccountValidity, error)
	// SetAccountValidity sets the expiry and whether renewal mails are
	// sent; it forgets the renewal token and the mail sent.
	SetAccountValidity(ctx context.Context, userID string, expirationTS int64, renewalEmails bool) error
	// SetRenewalToken records a new renewal token (its hash) mailed at
	// sentTS, replacing the previous one.
	SetRenewalToken(ctx context.Context, userID string, tokenHash []byte, sentTS int64) error
	// ClaimRenewalMail is SetRenewalToken only if no mail was sent for the
	// current period: false when another process (or an earlier pass)
	// claimed it, so each renewal mail goes out once.
	ClaimRenewalMail(ctx context.Context, userID string, tokenHash []byte, sentTS int64) (bool, error)
	// RenewAccount finds the account of a renewal token, sets its expiry
	// to expirationTS and forgets the token and the mail sent; ErrNotFound
	// for an unknown (or already used) token.
	RenewAccount(ctx context.Context, tokenHash []byte, expirationTS int64) (string, error)
	// AccountsDueRenewalMail lists users expiring before ts with renewal
	// mails on and none sent yet, soonest first, at most limit.
	AccountsDueRenewalMail(ctx context.Context, ts int64, limit int) ([]string, error)
}
