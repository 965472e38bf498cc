package threepid

import (
	"context"
	"net/http"
	"sync"
	"time"

	"conclave/internal/mail"
	"conclave/internal/matrix"
	"conclave/internal/store"
)

// MaxLookup bounds the addresses of one lookup.
const MaxLookup = 1000

// remoteTimeout bounds each question to another server: an answer that
// comes later is not waited for (that server's part is left out).
const remoteTimeout = 10 * time.Second

// InfoResult is the answer of /_matrix/identity/api/v1/info.
type InfoResult struct {
	HS      string `json:"hs,omitempty"`
	NewHS   string `json:"new_hs,omitempty"`
	Invited bool   `json:"invited"`
}

// Info tells which server an address's account lives on. hs is the server
// of the account the address is bound to, else the one the map gives;
// new_hs is the mapped one when they differ (the map moved the domain
// since). Where an account may be bound: this server and the mapped one are
// asked (the mapped one over federation); an account bound on a third
// server of the circle is not found. Asking every server would make an
// unauthenticated endpoint fan out across the circle. invited is what the
// mapped server knows: invites to an address are recorded there.
func (s *Service) Info(ctx context.Context, medium, address string) (InfoResult, error) {
	addr, err := Canonical(medium, address)
	if err != nil {
		return InfoResult{}, err
	}
	mapped, _, err := s.Home(addr)
	if err != nil {
		// No server of the circle takes this domain: nothing to answer.
		return InfoResult{}, nil
	}
	bound, err := s.Owner(ctx, addr)
	if err != nil {
		return InfoResult{}, err
	}
	var invited bool
	if mapped == s.ServerName {
		invited, err = s.invited(ctx, addr)
		if err != nil {
			return InfoResult{}, err
		}
	} else if s.Remote != nil {
		rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
		remoteBound, remoteInvited, err := s.Remote.Info(rctx, mapped, addr)
		cancel()
		if err != nil {
			if s.Log != nil {
				s.Log.Warn("asking the mapped server about an address", "server", mapped, "err", err)
			}
		} else {
			invited = remoteInvited
			if bound == "" {
				bound = remoteBound
			}
		}
	}
	res := InfoResult{HS: mapped, Invited: invited}
	if bound != "" {
		if hs := matrix.ServerOf(bound); hs != mapped {
			res.HS, res.NewHS = hs, mapped
		}
	}
	return res, nil
}

func (s *Service) invited(ctx context.Context, addr string) (bool, error) {
	invites, err := s.Store.ThreepidInvites(ctx, MediumEmail, addr)
	return len(invites) > 0, err
}

// LocalInfo answers another server's Info question: the local user bound
// to the address, if any, and whether an invite to it is recorded here.
func (s *Service) LocalInfo(ctx context.Context, medium, address string) (userID string, invited bool, err error) {
	addr, err := Canonical(medium, address)
	if err != nil {
		return "", false, err
	}
	if userID, err = s.Owner(ctx, addr); err != nil {
		return "", false, err
	}
	invited, err = s.invited(ctx, addr)
	return userID, invited, err
}

// PepperError is the spec's 400 M_INVALID_PEPPER, which tells the client
// the algorithm and pepper to use.
func PepperError() *matrix.Error {
	e := matrix.Errorf(http.StatusBadRequest, "M_INVALID_PEPPER", "Unknown or invalid pepper")
	e.Extra = map[string]any{"algorithm": "sha256", "lookup_pepper": Pepper}
	return e
}

// Lookup answers an identity service v2 lookup (sha256 only) for the whole
// circle: this server's bound addresses, then every other server of the
// map asked at once for the hashes still unknown (a hash does not say its
// domain, so the server that has it cannot be chosen). A server that fails
// or is slow is left out.
func (s *Service) Lookup(ctx context.Context, algorithm, pepper string, hashes []string) (map[string]string, error) {
	if algorithm != "sha256" {
		return nil, matrix.Errorf(http.StatusBadRequest, matrix.ErrInvalidParam, "Unsupported algorithm: use sha256")
	}
	if pepper != Pepper {
		return nil, PepperError()
	}
	if len(hashes) > MaxLookup {
		return nil, matrix.InvalidParam("At most %d addresses per lookup", MaxLookup)
	}
	found, err := s.Store.UsersByLookupHash(ctx, hashes)
	if err != nil {
		return nil, err
	}
	var rest []string
	for _, h := range hashes {
		if _, ok := found[h]; !ok {
			rest = append(rest, h)
		}
	}
	if len(rest) == 0 || s.Remote == nil || s.Domains == nil {
		return found, nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	want := map[string]bool{}
	for _, h := range rest {
		want[h] = true
	}
	for _, server := range s.Domains.Servers() {
		if server == s.ServerName {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
			defer cancel()
			got, err := s.Remote.Lookup(rctx, server, pepper, rest)
			if err != nil {
				if s.Log != nil {
					s.Log.Warn("identity lookup on another server", "server", server, "err", err)
				}
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for h, u := range got {
				// Only what was asked, and only that server's own users.
				if want[h] && matrix.ServerOf(u) == server {
					found[h] = u
				}
			}
		}()
	}
	wg.Wait()
	return found, nil
}

// LocalLookup answers another server's Lookup: this server's users only.
func (s *Service) LocalLookup(ctx context.Context, pepper string, hashes []string) (map[string]string, error) {
	if pepper != Pepper {
		return nil, PepperError()
	}
	if len(hashes) > MaxLookup {
		return nil, matrix.InvalidParam("At most %d hashes per lookup", MaxLookup)
	}
	return s.Store.UsersByLookupHash(ctx, hashes)
}

// BoundUser returns the user an address already has an account as, here
// or on the server the map gives it ("" if none): an invite to that address
// is then an ordinary invite, as Synapse does after an identity lookup.
func (s *Service) BoundUser(ctx context.Context, medium, address string) (string, error) {
	addr, err := Canonical(medium, address)
	if err != nil {
		return "", err
	}
	home, _, err := s.Home(addr)
	if err != nil {
		return "", err
	}
	if u, err := s.Owner(ctx, addr); err != nil || u != "" || home == s.ServerName {
		return u, err
	}
	if s.Remote == nil {
		return "", matrix.Errorf(http.StatusForbidden, ErrThreepidDenied, "This address belongs on %s, which this server cannot reach", home)
	}
	rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	u, _, err := s.Remote.Info(rctx, home, addr)
	if err != nil {
		return "", matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The server of this address (%s) did not answer", home)
	}
	if u != "" && matrix.ServerOf(u) != home {
		return "", nil // not that server's to say
	}
	return u, nil
}

// RecordInvite records sender's invite of an address without an account to
// roomID on the address's server — here, or there over federation — which
// mails the person. It is what lets an external register there and what
// /info reports as invited. The person joins after registering, invited
// again by a member (the m.room.third_party_invite event the client API
// writes is not exchanged for a membership).
func (s *Service) RecordInvite(ctx context.Context, sender, roomID, medium, address string) error {
	addr, err := Canonical(medium, address)
	if err != nil {
		return err
	}
	home, _, err := s.Home(addr)
	if err != nil {
		return err
	}
	inv := store.ThreepidInvite{Medium: MediumEmail, Address: addr, RoomID: roomID, Sender: sender, CreatedTS: s.now().UnixMilli()}
	if home == s.ServerName {
		return s.recordInvite(ctx, inv)
	}
	if s.Remote == nil {
		return matrix.Errorf(http.StatusForbidden, ErrThreepidDenied, "This address belongs on %s, which this server cannot reach", home)
	}
	rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	if err := s.Remote.Invite(rctx, home, inv); err != nil {
		return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The server of this address (%s) did not take the invite", home)
	}
	return nil
}

// ReceiveInvite records an invite another server sent for an address of
// this server (origin is that server: the sender must be one of its users).
func (s *Service) ReceiveInvite(ctx context.Context, origin string, inv store.ThreepidInvite) error {
	addr, err := Canonical(inv.Medium, inv.Address)
	if err != nil {
		return err
	}
	if matrix.ServerOf(inv.Sender) != origin || !matrix.ValidUserID(inv.Sender) || !matrix.ValidRoomID(inv.RoomID) {
		return matrix.Forbidden("The sender must be a user of the sending server")
	}
	home, _, err := s.Home(addr)
	if err != nil {
		return err
	}
	if home != s.ServerName {
		return matrix.Forbidden("This address does not belong on this server")
	}
	inv.Address, inv.CreatedTS = addr, s.now().UnixMilli()
	return s.recordInvite(ctx, inv)
}

func (s *Service) recordInvite(ctx context.Context, inv store.ThreepidInvite) error {
	if err := s.Store.AddThreepidInvite(ctx, &inv); err != nil {
		return err
	}
	if s.Mailer == nil || s.BaseURL == "" {
		return nil
	}
	m := mail.Message{To: inv.Address, Subject: "You are invited to " + s.ServerName,
		Text: "Hello,\n\n" + inv.Sender + " invited you to a conversation.\n\n" +
			"Create your account with this e-mail address on " + s.BaseURL + " to join it.\n"}
	if err := s.Mailer.Send(ctx, m); err != nil && s.Log != nil {
		// The invite stands; the mail is a courtesy.
		s.Log.Warn("sending an invitation mail", "err", err)
	}
	return nil
}

// Registered runs after an account was created with a verified address:
// it binds the address and forgets the invites to it.
func (s *Service) Registered(ctx context.Context, userID, address string) error {
	if err := s.Bind(ctx, userID, address); err != nil {
		return err
	}
	return s.Store.DeleteThreepidInvites(ctx, MediumEmail, address)
}
