package room

import (
	"bytes"
	"encoding/json"

	"conclave/internal/matrix"
)

// checkRetention refuses an m.room.retention event from a local user whose
// content is not what message retention reads (MSC1763; Synapse's event
// validator): min_lifetime and max_lifetime, when present, are integers,
// and min_lifetime is not above max_lifetime. 400 M_BAD_JSON, as Synapse.
// Events from other servers are not refused; internal/retention ignores
// values it cannot read.
func checkRetention(content json.RawMessage) error {
	var c struct {
		Min json.RawMessage `json:"min_lifetime"`
		Max json.RawMessage `json:"max_lifetime"`
	}
	if json.Unmarshal(content, &c) != nil {
		return matrix.BadJSON("m.room.retention content must be an object")
	}
	read := func(name string, raw json.RawMessage) (int64, bool, error) {
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			return 0, false, nil
		}
		var n int64
		if raw[0] == '"' || bytes.ContainsAny(raw, ".eE") || json.Unmarshal(raw, &n) != nil {
			return 0, false, matrix.BadJSON("'%s' must be an integer", name)
		}
		return n, true, nil
	}
	lo, hasLo, err := read("min_lifetime", c.Min)
	if err != nil {
		return err
	}
	hi, hasHi, err := read("max_lifetime", c.Max)
	if err != nil {
		return err
	}
	if hasLo && hasHi && lo > hi {
		return matrix.BadJSON("'min_lifetime' can't be greater than 'max_lifetime'")
	}
	return nil
}
