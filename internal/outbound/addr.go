package outbound

import (
	"errors"
	"net/netip"
)

// ErrForbiddenAddress is returned when the only addresses a host has are
// ones outbound requests may not reach (private, loopback, …) and the
// client was not told to allow them.
var ErrForbiddenAddress = errors.New("outbound: address is private, loopback, link-local or otherwise not public")

// forbidden are the ranges a request to "the internet" must never reach
// unless the operator allows it: what the host itself, its LAN or its cloud
// metadata service answer on. Synapse's default ip_range_blacklist is the
// model (docs: federation_ip_range_blacklist).
var forbidden = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		// IPv4
		"0.0.0.0/8",       // "this network", 0.0.0.0 unspecified
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // carrier-grade NAT
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata at .169.254)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, broadcast
		// IPv6 (IPv4-mapped addresses are unmapped before the check)
		"::/128",         // unspecified
		"::1/128",        // loopback
		"64:ff9b:1::/48", // local-use NAT64
		"100::/64",       // discard
		"2001:db8::/32",  // documentation
		"fc00::/7",       // unique local
		"fe80::/10",      // link-local
		"fec0::/10",      // site-local (deprecated)
		"ff00::/8",       // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Forbidden reports whether a is an address outbound requests refuse by
// default: private, loopback, link-local, unspecified, multicast,
// documentation and other non-global ranges, for IPv4 and IPv6. IPv4-mapped
// IPv6 addresses are judged as the IPv4 address they carry, and so are the
// IPv4 addresses embedded in NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
// addresses, which reach the same hosts.
func Forbidden(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = a.Unmap()
	if a.Zone() != "" {
		return true // scoped addresses are link-local by nature
	}
	if a.Is6() {
		b := a.As16()
		if nat64.Contains(a) {
			return Forbidden(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		}
		if sixToFour.Contains(a) && Forbidden(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})) {
			return true
		}
	}
	for _, p := range forbidden {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)
