package mediaapi

import (
	"mime"
	"net/http"
	"strings"
)

// contentSecurityPolicy sandboxes media opened directly in a browser, so
// uploaded HTML or SVG cannot run script in the homeserver's origin.
const contentSecurityPolicy = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"

// setSafetyHeaders sets the headers every media response carries.
func setSafetyHeaders(h http.Header, legacy bool) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	// Media is embedded by web clients on other origins.
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	// Content behind an mxc URI never changes. Authenticated responses are
	// private so a shared cache cannot hand them to unauthenticated callers.
	if legacy {
		h.Set("Cache-Control", "public, max-age=86400, s-maxage=86400")
	} else {
		h.Set("Cache-Control", "private, max-age=86400")
	}
}

// inlineTypes may be shown inline: the spec's list of types that are safe to
// render (Client-Server API, "Content repository": Content-Disposition on
// downloads). Everything else, notably text/html and image/svg+xml, is an
// attachment.
var inlineTypes = map[string]bool{
	"text/css": true, "text/plain": true, "text/csv": true,
	"application/json": true, "application/ld+json": true,
	"image/jpeg": true, "image/gif": true, "image/png": true, "image/apng": true, "image/webp": true, "image/avif": true,
	"video/mp4": true, "video/webm": true, "video/ogg": true, "video/quicktime": true,
	"audio/mp4": true, "audio/webm": true, "audio/aac": true, "audio/mpeg": true, "audio/ogg": true,
	"audio/wave": true, "audio/wav": true, "audio/x-wav": true, "audio/x-pn-wav": true, "audio/flac": true, "audio/x-flac": true,
}

// ContentDisposition builds the header for content of type ct named
// filename (may be empty): inline for the allowlist, attachment otherwise,
// with the name as RFC 6266 / RFC 8187 filename*=utf-8”… when it is not a
// plain token, so no name can break out of the header.
func ContentDisposition(ct, filename string) string {
	disp := "attachment"
	if t, _, err := mime.ParseMediaType(ct); err == nil && inlineTypes[t] {
		disp = "inline"
	}
	if filename == "" {
		return disp
	}
	if isToken(filename) {
		return disp + "; filename=" + filename
	}
	return disp + "; filename*=utf-8''" + encodeExtValue(filename)
}

// isToken reports whether s is an RFC 7230 token.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return s != ""
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0 // no % or ': some browsers decode them
}

// encodeExtValue percent-encodes everything but RFC 8187 attr-chars.
func encodeExtValue(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		attr := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0
		if attr {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}
