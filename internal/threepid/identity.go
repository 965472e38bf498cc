package threepid

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"strings"
	"sync"
	"time"

	"conclave/internal/event"
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

// InviteEventContent is the content of the m.room.third_party_invite an
// invite by e-mail writes into the room: the address shown without giving it
// away (as sydent does), and this server's signing key as the key whose
// signature will vouch for the account the address gets (ConvertInvites).
func (s *Service) InviteEventContent(address string) json.RawMessage {
	validity := s.BaseURL + "/_matrix/identity/v2/pubkey/isvalid"
	var pub string
	if s.Key != nil {
		pub = s.Key.PublicKeyBase64()
	}
	b, _ := json.Marshal(map[string]any{
		"display_name":     RedactAddress(address),
		"key_validity_url": validity,
		"public_key":       pub,
		"public_keys":      []any{map[string]string{"public_key": pub, "key_validity_url": validity}},
	})
	return b
}

// ValidPublicKey reports whether key is this server's (pubkey/isvalid).
func (s *Service) ValidPublicKey(key string) bool {
	return s.Key != nil && key != "" && strings.TrimRight(key, "=") == s.Key.PublicKeyBase64()
}

// RedactAddress shows an address without giving it away: the start of the
// local part and the domain.
func RedactAddress(addr string) string {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "…"
	}
	local := []rune(addr[:at])
	if len(local) > 3 {
		local = local[:3]
	}
	return string(local) + "…" + addr[at:]
}

// RecordInvite records sender's invite of an address without an account to
// roomID, token being the state key of the room's m.room.third_party_invite:
// here, to exchange it for an invite once the address has an account
// (ConvertInvites), and on the address's server — here, or there over
// federation — which mails the person. That second record is what lets an
// external register there and what /info reports as invited.
func (s *Service) RecordInvite(ctx context.Context, sender, roomID, medium, address, token string) error {
	addr, err := Canonical(medium, address)
	if err != nil {
		return err
	}
	home, _, err := s.Home(addr)
	if err != nil {
		return err
	}
	inv := store.ThreepidInvite{Medium: MediumEmail, Address: addr, RoomID: roomID, Sender: sender, Token: token, CreatedTS: s.now().UnixMilli()}
	if home == s.ServerName {
		return s.recordInvite(ctx, inv)
	}
	if s.Remote == nil {
		return matrix.Errorf(http.StatusForbidden, ErrThreepidDenied, "This address belongs on %s, which this server cannot reach", home)
	}
	if err := s.Store.AddThreepidInvite(ctx, &inv); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	inv.Token = ""
	if err := s.Remote.Invite(rctx, home, inv); err != nil {
		return matrix.Errorf(http.StatusBadGateway, matrix.ErrUnknown, "The server of this address (%s) did not take the invite", home)
	}
	return nil
}

// ConvertInvites exchanges this server's users' e-mail invites to address
// for invites of userID, the account the address now has: each invite
// carries third_party_invite.signed ({mxid, sender, token} signed with this
// server's key, the key the room's m.room.third_party_invite names), so the
// authorisation rules accept it as the invite's exchange — and a direct room
// takes it, its one e-mail invite becoming its second member. The records
// go; an invite the room refuses now (the inviter lost the power, the room
// moved on) is logged and dropped.
func (s *Service) ConvertInvites(ctx context.Context, address, userID string) {
	invites, err := s.Store.ThreepidInvites(ctx, MediumEmail, address)
	if err != nil {
		s.logWarn("reading invites to convert", err)
		return
	}
	for _, inv := range invites {
		if inv.Token == "" || matrix.ServerOf(inv.Sender) != s.ServerName || s.Key == nil || s.InviteAs == nil {
			continue
		}
		raw, _ := json.Marshal(map[string]string{"mxid": userID, "sender": inv.Sender, "token": inv.Token})
		signed, err := event.SignJSON(raw, s.ServerName, s.Key)
		if err != nil {
			s.logWarn("signing an invite exchange", err)
			continue
		}
		tpi, _ := json.Marshal(map[string]any{"display_name": RedactAddress(address), "signed": json.RawMessage(signed)})
		if err := s.InviteAs(ctx, inv.RoomID, inv.Sender, userID, map[string]json.RawMessage{"third_party_invite": tpi}); err != nil {
			s.logWarn("exchanging an e-mail invite", err)
		}
	}
	if err := s.Store.DeleteThreepidInvites(ctx, MediumEmail, address); err != nil {
		s.logWarn("forgetting converted invites", err)
	}
}

// ReceiveBound: origin, the address's server, says the address now has an
// account there; this server's users' invites to it are exchanged.
func (s *Service) ReceiveBound(ctx context.Context, origin, medium, address, userID string) error {
	addr, err := Canonical(medium, address)
	if err != nil {
		return err
	}
	if home, _, err := s.Home(addr); err != nil || home != origin || matrix.ServerOf(userID) != origin || !matrix.ValidUserID(userID) {
		return matrix.Forbidden("Only the server of an address says who it belongs to")
	}
	s.ConvertInvites(context.WithoutCancel(ctx), addr, userID)
	return nil
}

func (s *Service) logWarn(what string, err error) {
	if s.Log != nil {
		s.Log.Warn("threepid: "+what, "err", err)
	}
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
	// The invite stands whatever becomes of the mail, a courtesy: it is
	// sent apart, so a slow mail server does not hold the inviter (or the
	// inviting server, waiting on federation) up.
	s.mailing.Add(1)
	go func() {
		defer s.mailing.Done()
		if err := s.Mailer.Send(context.WithoutCancel(ctx), m); err != nil {
			s.logWarn("sending an invitation mail", err)
		}
	}()
	return nil
}

// WaitMail waits for the invitation mails being sent (shutdown, tests).
func (s *Service) WaitMail() { s.mailing.Wait() }

// RegisterAccount creates the account of a verified address: create makes
// it with the localpart the address gives (Localpart), then the address is
// bound to it and the invites to it are forgotten. One registration per
// address runs at a time in this process, after checking that the address
// has no account, so a request sent twice does not make two accounts.
func (s *Service) RegisterAccount(ctx context.Context, address string, create func(localpart string) (userID string, err error)) (string, error) {
	unlock := s.lockAddress(address)
	defer unlock()
	if owner, err := s.Owner(ctx, address); err != nil {
		return "", err
	} else if owner != "" {
		return "", matrix.Errorf(http.StatusBadRequest, matrix.ErrThreepidInUse, "This e-mail address is already in use")
	}
	userID, err := create(Localpart(address))
	if err != nil {
		return "", err
	}
	if err := s.Bind(ctx, userID, address); err != nil {
		return "", err
	}
	s.announceBound(context.WithoutCancel(ctx), address, userID)
	return userID, nil
}

// Registered binds an address to an account just made from it elsewhere
// (single sign-on) and turns the invites to it into invites of it, as
// RegisterAccount does.
func (s *Service) Registered(ctx context.Context, userID, address string) error {
	if err := s.Bind(ctx, userID, address); err != nil {
		return err
	}
	s.announceBound(context.WithoutCancel(ctx), address, userID)
	return nil
}

// announceBound turns the invites to an address that now has an account
// into invites of it: this server's users' here, the others' by telling
// their servers (Remote.Bound). The records go.
func (s *Service) announceBound(ctx context.Context, address, userID string) {
	invites, err := s.Store.ThreepidInvites(ctx, MediumEmail, address)
	if err != nil {
		s.logWarn("reading invites", err)
		return
	}
	told := map[string]bool{}
	for _, inv := range invites {
		server := matrix.ServerOf(inv.Sender)
		if server == s.ServerName || told[server] || s.Remote == nil {
			continue
		}
		told[server] = true
		rctx, cancel := context.WithTimeout(ctx, remoteTimeout)
		if err := s.Remote.Bound(rctx, server, address, userID); err != nil {
			s.logWarn("telling an inviter's server", err)
		}
		cancel()
	}
	s.ConvertInvites(ctx, address, userID)
}

func (s *Service) lockAddress(address string) func() {
	h := fnv.New32a()
	h.Write([]byte(address))
	m := &s.locks[h.Sum32()%uint32(len(s.locks))]
	m.Lock()
	return m.Unlock
}
