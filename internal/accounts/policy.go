package accounts

import (
	"net/http"
	"unicode/utf8"

	"conclave/internal/matrix"
)

// PasswordPolicy is what a new password must satisfy (config
// password_min_length, password_require_*). The zero policy asks nothing.
type PasswordPolicy struct {
	MinLength        int
	RequireDigit     bool
	RequireSymbol    bool
	RequireLowercase bool
	RequireUppercase bool
}

// Enabled reports whether the policy asks anything.
func (p PasswordPolicy) Enabled() bool { return p != PasswordPolicy{} }

// Describe is the body of GET /password_policy: {} when there is no policy,
// else the m.* keys Synapse announces (rest/client/password_policy.py),
// which Tchap's clients read.
func (p PasswordPolicy) Describe() map[string]any {
	if !p.Enabled() {
		return map[string]any{}
	}
	return map[string]any{
		"m.minimum_length":    p.MinLength,
		"m.require_digit":     p.RequireDigit,
		"m.require_symbol":    p.RequireSymbol,
		"m.require_lowercase": p.RequireLowercase,
		"m.require_uppercase": p.RequireUppercase,
	}
}

// Check refuses a password the policy does not allow, with the errcode of
// the first rule it breaks (400, as Synapse's PasswordRefusedError). Length
// counts characters; a symbol is anything but an ASCII letter or digit, as
// Synapse's handlers/password_policy.py reads them.
func (p PasswordPolicy) Check(pw string) error {
	if !p.Enabled() {
		return nil
	}
	if utf8.RuneCountInString(pw) < p.MinLength {
		return matrix.Errorf(http.StatusBadRequest, "M_PASSWORD_TOO_SHORT", "The password must be at least %d characters long", p.MinLength)
	}
	var digit, symbol, lower, upper bool
	for _, r := range pw {
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		default:
			symbol = true
		}
	}
	switch {
	case p.RequireDigit && !digit:
		return matrix.Errorf(http.StatusBadRequest, "M_PASSWORD_NO_DIGIT", "The password must contain a digit")
	case p.RequireSymbol && !symbol:
		return matrix.Errorf(http.StatusBadRequest, "M_PASSWORD_NO_SYMBOL", "The password must contain a symbol")
	case p.RequireLowercase && !lower:
		return matrix.Errorf(http.StatusBadRequest, "M_PASSWORD_NO_LOWERCASE", "The password must contain a lowercase letter")
	case p.RequireUppercase && !upper:
		return matrix.Errorf(http.StatusBadRequest, "M_PASSWORD_NO_UPPERCASE", "The password must contain an uppercase letter")
	}
	return nil
}

// PasswordPolicy returns the server's password policy.
func (s *Service) PasswordPolicy() PasswordPolicy { return s.opts.PasswordPolicy }

// CheckNewPasswordPolicy checks a password a user chooses (registration,
// password change and, once it exists, reset): its length bound, then the
// policy.
func (s *Service) CheckNewPasswordPolicy(pw string) error {
	if err := CheckNewPassword(pw); err != nil || pw == "" {
		// No password (a later stage of user-interactive auth, which
		// sends it again with the final request): nothing to judge.
		return err
	}
	return s.opts.PasswordPolicy.Check(pw)
}
