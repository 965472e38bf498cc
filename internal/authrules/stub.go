package authrules

import (
	"encoding/json"

	"conclave/internal/event"
)

type StateGetter interface {
	StateEvent(eventType, stateKey string) *event.PDU
}
type StateKey struct{ Type, StateKey string }

func Check(ev *event.PDU, state StateGetter) error { return nil }
func Needed(rv *event.RoomVersion, eventType string, stateKey *string, sender string, content json.RawMessage) []StateKey {
	return nil
}

type PowerLevels struct{}

func ParsePowerLevels(rv *event.RoomVersion, content json.RawMessage, create *event.PDU) (*PowerLevels, error) {
	return &PowerLevels{}, nil
}
func (p *PowerLevels) UserLevel(u string) int64 { return 0 }
func (p *PowerLevels) Redact() int64            { return 50 }
func Membership(ev *event.PDU) (string, error) {
	var c struct {
		M string `json:"membership"`
	}
	err := json.Unmarshal(ev.Content, &c)
	return c.M, err
}
