package contentscan

import (
	"bytes"
	"mime"
	"net/http"
	"strings"
)

// sniffLen is how much of the content decides its type.
const sniffLen = 512

// DetectType names the MIME type of content from its first bytes: the
// executable formats an operator most likely wants to refuse, then what
// net/http's sniffer (the WHATWG algorithm) recognises — images, audio,
// video, fonts, PDF, PostScript, HTML, XML, archives, plain text — and
// application/octet-stream for the rest. The type a client declares is not
// used: it is what a malicious sender would lie about. libmagic, which
// matrix-content-scanner uses, knows more formats; this knows the ones a
// policy is usually about.
func DetectType(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("MZ")):
		return "application/x-dosexec"
	case bytes.HasPrefix(head, []byte("\x7fELF")):
		return "application/x-executable"
	case bytes.HasPrefix(head, []byte{0xfe, 0xed, 0xfa, 0xce}), bytes.HasPrefix(head, []byte{0xfe, 0xed, 0xfa, 0xcf}),
		bytes.HasPrefix(head, []byte{0xce, 0xfa, 0xed, 0xfe}), bytes.HasPrefix(head, []byte{0xcf, 0xfa, 0xed, 0xfe}):
		return "application/x-mach-binary"
	case bytes.HasPrefix(head, []byte("#!")):
		return "text/x-shellscript"
	}
	t, _, err := mime.ParseMediaType(http.DetectContentType(head))
	if err != nil {
		return "application/octet-stream"
	}
	return t
}

// typePolicy is the operator's allow list or block list of MIME types
// (type/subtype, or type/* for a whole family).
type typePolicy struct {
	allowed, blocked []string
}

func matchType(patterns []string, t string) bool {
	for _, p := range patterns {
		p = strings.ToLower(p)
		if p == t || strings.HasSuffix(p, "/*") && strings.HasPrefix(t, strings.TrimSuffix(p, "*")) {
			return true
		}
	}
	return false
}

// permits reports whether content of type t may be served.
func (p typePolicy) permits(t string) bool {
	if len(p.allowed) > 0 && !matchType(p.allowed, t) {
		return false
	}
	return !matchType(p.blocked, t)
}

func (p typePolicy) active() bool { return len(p.allowed) > 0 || len(p.blocked) > 0 }
