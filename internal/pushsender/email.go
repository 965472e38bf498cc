package pushsender

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"conclave/internal/mail"
	"conclave/internal/store"
)

// E-mail pushers (kind "email", pushkey = one of the user's addresses):
// missed notifications by mail, as Synapse's email pusher sends them. A
// notification waits EmailDelay; then it and every notification after it
// are looked at together, those the user has read meanwhile (read
// receipts) are left out, and one mail lists the rest by room — room names and
// senders only, never message content (encrypted rooms have none to give,
// and a mail leaves the circle's servers). The cursor then moves past them,
// so each notification is mailed at most once; a mail server that fails
// is retried with the same back-off as a gateway.

// maxEmailBatch bounds the notifications one mail covers.
const maxEmailBatch = 100

func (s *Sender) deliverEmail(ctx context.Context, p *store.Pusher, release func(retryAt int64)) {
	for ctx.Err() == nil {
		ns, err := s.st.PushPending(ctx, p.UserID, p.LastPos, maxEmailBatch)
		if err != nil {
			s.o.Log.Warn("push: reading notifications", "user", p.UserID, "err", err)
			release(0)
			return
		}
		if len(ns) == 0 {
			release(0)
			return
		}
		now := s.o.Now()
		if ns[0].TS > now.Add(-s.o.EmailDelay).UnixMilli() {
			// Come back when the oldest is old enough; the mail then
			// covers everything pending, as Synapse's does.
			release(ns[0].TS + s.o.EmailDelay.Milliseconds())
			return
		}
		if s.o.Mail == nil {
			// Mail was turned off since the pusher was made: nothing can
			// be sent, and nothing is kept waiting.
			p.LastPos = ns[len(ns)-1].Pos
		} else {
			if err := s.st.MarkRead(ctx, p.UserID, ns); err != nil {
				s.o.Log.Warn("push: reading receipts", "user", p.UserID, "err", err)
				release(0)
				return
			}
			var unread []store.Notification
			for _, n := range ns {
				if !n.Read {
					unread = append(unread, n)
				}
			}
			if len(unread) > 0 {
				if err := s.o.Mail.Send(ctx, s.missedMail(ctx, p, unread)); err != nil {
					if ctx.Err() != nil {
						release(0)
						return
					}
					s.o.Log.Info("push: mail server failed", "user", p.UserID, "err", err)
					if p.FailingSince == 0 {
						p.FailingSince = now.UnixMilli()
					}
					failing := now.Sub(time.UnixMilli(p.FailingSince))
					if failing < s.o.GiveUpAfter {
						release(now.Add(min(max(failing, time.Second), s.o.MaxBackoff)).UnixMilli())
						return
					}
					s.o.Log.Warn("push: mail server failing for too long; notifications dropped", "user", p.UserID)
				}
			}
			p.LastPos, p.FailingSince = ns[len(ns)-1].Pos, 0
		}
		held, err := s.st.UpdatePusher(context.WithoutCancel(ctx), p, s.o.Owner, p.LastPos, 0, 0, now.Add(s.o.ClaimFor).UnixMilli())
		if err != nil || !held {
			if err != nil {
				s.o.Log.Warn("push: recording progress", "user", p.UserID, "err", err)
			}
			return
		}
	}
	release(0)
}

// missedMail lists unread notifications by room.
func (s *Sender) missedMail(ctx context.Context, p *store.Pusher, ns []store.Notification) mail.Message {
	type roomSum struct {
		name    string
		count   int
		senders []string
	}
	rooms := map[string]*roomSum{}
	var order []string
	for _, n := range ns {
		r := rooms[n.RoomID]
		if r == nil {
			r = &roomSum{}
			rooms[n.RoomID] = r
			order = append(order, n.RoomID)
		}
		r.count++
		ev, err := s.st.GetEvent(ctx, n.EventID)
		if err != nil {
			continue
		}
		sender := eventSender(ev.JSON)
		info := RoomInfo{}
		if s.o.Describe != nil {
			info = s.o.Describe(ctx, n.RoomID, sender)
		}
		if r.name == "" {
			r.name = info.RoomName
			if r.name == "" {
				r.name = info.RoomAlias
			}
		}
		who := info.SenderDisplayName
		if who == "" {
			who = sender
		}
		if who != "" && !contains(r.senders, who) && len(r.senders) < 5 {
			r.senders = append(r.senders, who)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return rooms[order[i]].count > rooms[order[j]].count })
	var b strings.Builder
	b.WriteString("Hello,\n\nYou have unread messages on " + s.o.EmailServer + ":\n\n")
	for _, id := range order {
		r := rooms[id]
		name := r.name
		if name == "" {
			if len(r.senders) > 0 {
				name = "a conversation with " + strings.Join(r.senders, ", ")
			} else {
				name = "a conversation"
			}
		}
		fmt.Fprintf(&b, "- %d in %s", r.count, name)
		if len(r.senders) > 0 && r.name != "" {
			fmt.Fprintf(&b, " (from %s)", strings.Join(r.senders, ", "))
		}
		b.WriteString("\n")
	}
	if s.o.EmailLink != "" {
		b.WriteString("\nOpen your application, or " + s.o.EmailLink + ", to read them.\n")
	}
	b.WriteString("\nYou get this mail because you asked to be told of missed messages by e-mail.\n")
	subject := fmt.Sprintf("%d unread message", len(ns))
	if len(ns) > 1 {
		subject += "s"
	}
	return mail.Message{To: p.PushKey, Subject: subject + " on " + s.o.EmailServer, Text: b.String()}
}

func eventSender(raw []byte) string {
	var e struct {
		Sender string `json:"sender"`
	}
	_ = jsonUnmarshal(raw, &e)
	return e.Sender
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
