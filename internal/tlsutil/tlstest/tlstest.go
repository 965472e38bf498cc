// Package tlstest makes throwaway certificate authorities for tests, shaped
// like the one Complement gives a homeserver image.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// KeyFormat selects how the CA key is written.
type KeyFormat int

const (
	RSAPKCS1 KeyFormat = iota // "RSA PRIVATE KEY", what Complement writes
	RSAPKCS8                  // "PRIVATE KEY" holding an RSA key
	ECSEC1                    // "EC PRIVATE KEY" after "EC PARAMETERS", what openssl ecparam -genkey writes
	ECPKCS8                   // "PRIVATE KEY" holding a P-256 key
)

// CA is a generated certificate authority.
type CA struct {
	Cert              *x509.Certificate
	Key               crypto.Signer
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string // written into a test temp dir
}

// NewCA makes a CA valid for ten years with its key in format, and writes
// ca.crt and ca.key into a temporary directory of t. RSA keys are 2048-bit
// (Complement uses 4096; the size does not matter to the code under test).
func NewCA(t testing.TB, format KeyFormat) *CA {
	t.Helper()
	var key crypto.Signer
	var err error
	switch format {
	case RSAPKCS1, RSAPKCS8:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "Conclave Test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	switch format {
	case RSAPKCS1:
		ca.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))})
	case ECSEC1:
		b, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		// prime256v1 OID, as openssl writes it.
		params := []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
		ca.KeyPEM = append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: params}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b})...)
	default:
		b, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		ca.KeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	}
	dir := t.TempDir()
	ca.CertFile = filepath.Join(dir, "ca.crt")
	ca.KeyFile = filepath.Join(dir, "ca.key")
	if err := os.WriteFile(ca.CertFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca.KeyFile, ca.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// Pool returns a pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}
