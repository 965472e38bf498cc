package federationapi

import (
	"errors"
	"strings"
)

// xMatrix is one parsed X-Matrix Authorization header.
type xMatrix struct {
	Origin, Destination, Key, Sig string
	// HasDestination: the destination parameter was present (senders
	// before spec v1.3 leave it out).
	HasDestination bool
}

// parseXMatrix parses one Authorization header value of the X-Matrix scheme
// (Server-Server API, "Request Authentication"): the scheme, one or more
// spaces, then comma-separated name=value parameters (names case
// insensitive, spaces and tabs around commas allowed, values quoted with
// backslash escapes or bare tokens, colons allowed in bare values for older
// servers). Unknown parameters are ignored. ok is false when the header is
// of another scheme.
//
// TODO(merge): replace with internal/xmatrix's parser (branch s4-outbound);
// authenticate calls only this function.
func parseXMatrix(h string) (x xMatrix, ok bool, err error) {
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "X-Matrix") {
		return x, false, nil
	}
	rest = strings.TrimLeft(rest, " ")
	for rest != "" {
		var name, value string
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return x, true, errors.New("parameter without a value")
		}
		name = strings.ToLower(strings.Trim(rest[:eq], " \t"))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i, closed := 1, false
			for ; i < len(rest); i++ {
				c := rest[i]
				if c == '\\' && i+1 < len(rest) {
					i++
					b.WriteByte(rest[i])
				} else if c == '"' {
					closed = true
					break
				} else {
					b.WriteByte(c)
				}
			}
			if !closed {
				return x, true, errors.New("unterminated quoted value")
			}
			value, rest = b.String(), rest[i+1:]
			rest = strings.TrimLeft(rest, " \t")
			if rest != "" && rest[0] != ',' {
				return x, true, errors.New("text after a quoted value")
			}
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			value, rest = strings.TrimRight(rest[:end], " \t"), rest[end:]
		}
		rest = strings.TrimLeft(strings.TrimPrefix(rest, ","), " \t")
		switch name {
		case "origin":
			x.Origin = value
		case "destination":
			x.Destination, x.HasDestination = value, true
		case "key":
			x.Key = value
		case "sig":
			x.Sig = value
		}
	}
	if x.Origin == "" || x.Key == "" || x.Sig == "" {
		return x, true, errors.New("origin, key and sig are required")
	}
	return x, true, nil
}
