// Package tlsutil builds the TLS configuration of Conclave's listeners and
// the trust roots of its outgoing federation requests from configuration
// files: either a certificate and key to serve as they are, or a CA
// certificate and key from which a fresh certificate for the server name is
// issued at every start (the Complement conformance image works this way).
package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// Files names the PEM files of the configuration; empty means not set.
type Files struct {
	Cert, Key     string // tls_cert, tls_key: served as they are
	CACert, CAKey string // tls_ca_cert, tls_ca_key: issue a certificate at start
}

// Configured reports whether any TLS source is set.
func (f Files) Configured() bool { return f.Cert != "" || f.CACert != "" }

// Bundle is what the listeners and the federation client need.
type Bundle struct {
	// Server serves the listeners (clone it before changing it).
	Server *tls.Config
	// Roots verifies the certificates of remote servers. When a CA is
	// configured it is the only root; otherwise it is nil, which makes
	// crypto/tls use the system roots.
	Roots *x509.CertPool
	// Leaf is the served certificate, parsed.
	Leaf *x509.Certificate
	// CACerts are the certificates of tls_ca_cert (nil when none): the
	// federation client trusts them besides the system roots.
	CACerts []*x509.Certificate
}

// Validity is how long an issued certificate is valid.
const Validity = 365 * 24 * time.Hour

// Load reads the files and returns the bundle for serverName. When Cert/Key
// are set they are served; otherwise, when CACert/CAKey are set, a new
// ECDSA P-256 key and a certificate for the host part of serverName, signed
// by the CA, are made. Either way a configured CA becomes the only root.
func Load(serverName string, f Files, now time.Time) (*Bundle, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("tls_cert and tls_key go together")
	}
	if (f.CACert == "") != (f.CAKey == "") {
		return nil, errors.New("tls_ca_cert and tls_ca_key go together")
	}
	if !f.Configured() {
		return nil, errors.New("no TLS certificate configured: set tls_cert and tls_key, or tls_ca_cert and tls_ca_key")
	}
	b := &Bundle{}
	var ca *x509.Certificate
	var caKey crypto.Signer
	if f.CACert != "" {
		caPEM, err := os.ReadFile(f.CACert)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_cert: %w", err)
		}
		keyPEM, err := os.ReadFile(f.CAKey)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_key: %w", err)
		}
		certs, err := ParseCertificates(caPEM)
		if err != nil {
			return nil, fmt.Errorf("tls_ca_cert %s: %w", f.CACert, err)
		}
		ca = certs[0]
		if caKey, err = ParsePrivateKey(keyPEM); err != nil {
			return nil, fmt.Errorf("tls_ca_key %s: %w", f.CAKey, err)
		}
		if !publicKeysEqual(ca.PublicKey, caKey.Public()) {
			return nil, fmt.Errorf("tls_ca_key %s does not belong to tls_ca_cert %s", f.CAKey, f.CACert)
		}
		b.Roots = x509.NewCertPool()
		b.CACerts = certs
		for _, c := range certs {
			b.Roots.AddCert(c)
		}
	}
	var cert tls.Certificate
	if f.Cert != "" {
		var err error
		cert, err = tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tls_cert/tls_key: %w", err)
		}
	} else {
		var err error
		cert, err = Issue(ca, caKey, serverName, now)
		if err != nil {
			return nil, err
		}
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("tls_cert: %w", err)
		}
		cert.Leaf = leaf
	}
	b.Leaf = cert.Leaf
	b.Server = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1"},
	}
	return b, nil
}

// Client returns a TLS configuration for outgoing requests that trusts
// Roots (the system roots when nil).
func (b *Bundle) Client() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: b.Roots}
}

// Issue makes a new ECDSA P-256 key and a certificate for the host part of
// serverName signed by ca, valid from an hour before now (clock skew) for
// Validity, but not beyond the CA's own expiry. The chain served is the
// leaf followed by the CA.
func Issue(ca *x509.Certificate, caKey crypto.Signer, serverName string, now time.Time) (tls.Certificate, error) {
	host, err := Host(serverName)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !ca.IsCA {
		return tls.Certificate{}, errors.New("tls_ca_cert is not a CA certificate (basic constraints CA:FALSE or absent)")
	}
	if now.After(ca.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("tls_ca_cert expired on %s", ca.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	notAfter := now.Add(Validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue certificate for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Host returns the host part of a server name ("host[:port]"): a DNS name,
// an IPv4 address or an IPv6 literal without its brackets.
func Host(serverName string) (string, error) {
	bad := fmt.Errorf("server name %q has no valid host", serverName)
	if serverName == "" {
		return "", bad
	}
	if serverName[0] == '[' {
		end := strings.IndexByte(serverName, ']')
		if end < 0 {
			return "", bad
		}
		ip := net.ParseIP(serverName[1:end])
		if ip == nil || ip.To4() != nil && !strings.Contains(serverName[1:end], ":") {
			return "", bad
		}
		return serverName[1:end], nil
	}
	host := serverName
	if i := strings.LastIndexByte(serverName, ':'); i >= 0 {
		host = serverName[:i]
	}
	if host == "" || strings.ContainsAny(host, ":[]") {
		return "", bad
	}
	return strings.ToLower(host), nil
}

// ParseCertificates reads every CERTIFICATE block of a PEM file; there must
// be at least one.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// ParsePrivateKey reads the first private key of a PEM file: PKCS#1 "RSA
// PRIVATE KEY", PKCS#8 "PRIVATE KEY" (RSA, ECDSA or Ed25519) or SEC 1 "EC
// PRIVATE KEY". Other blocks ("EC PARAMETERS", certificates) are skipped.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil, errors.New("no PEM private key block found (RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY)")
		}
		var key any
		var err error
		switch blk.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(blk.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted private keys are not supported")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", blk.Type, err)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type %T", blk.Type, key)
		}
		return s, nil
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}
