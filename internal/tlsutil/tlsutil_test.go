package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/tlsutil/tlstest"
)

func caFiles(ca *tlstest.CA) Files { return Files{CACert: ca.CertFile, CAKey: ca.KeyFile} }

// handshake serves one TLS connection with srv on loopback, dials it with
// cli for serverName and checks a byte crosses both ways.
func handshake(t *testing.T, srv, cli *tls.Config, serverName string) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err != nil {
			done <- err
			return
		}
		_, err = c.Write(b)
		done <- err
	}()
	cli = cli.Clone()
	cli.ServerName = serverName
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err != nil {
		ln.Close()
		<-done
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'x' {
		t.Fatalf("echo: %q %v", b, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server side: %v", err)
	}
	return nil
}

func TestIssueFromCAEveryKeyFormat(t *testing.T) {
	formats := map[string]tlstest.KeyFormat{"rsa-pkcs1": tlstest.RSAPKCS1, "rsa-pkcs8": tlstest.RSAPKCS8, "ec-sec1": tlstest.ECSEC1, "ec-pkcs8": tlstest.ECPKCS8}
	for name, f := range formats {
		t.Run(name, func(t *testing.T) {
			ca := tlstest.NewCA(t, f)
			now := time.Now()
			b, err := Load("hs1", caFiles(ca), now)
			if err != nil {
				t.Fatal(err)
			}
			leaf := b.Leaf
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "hs1" || len(leaf.IPAddresses) != 0 {
				t.Fatalf("SANs: dns %v ip %v", leaf.DNSNames, leaf.IPAddresses)
			}
			if leaf.IsCA {
				t.Fatal("leaf is a CA")
			}
			if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok {
				t.Fatalf("leaf key %T", leaf.PublicKey)
			}
			if d := leaf.NotAfter.Sub(now); d < Validity-time.Minute || d > Validity+time.Minute {
				t.Fatalf("validity %v", d)
			}
			if !leaf.NotBefore.Before(now) {
				t.Fatalf("not before %v is not before now", leaf.NotBefore)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "hs1", Roots: b.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Fatalf("verify with returned roots: %v", err)
			}
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "hs2", Roots: b.Roots}); err == nil {
				t.Fatal("certificate for hs1 verified as hs2")
			}
			if !b.Roots.Equal(ca.Pool()) {
				t.Fatal("roots are not exactly the CA")
			}
			if len(b.CACerts) != 1 || !b.CACerts[0].Equal(ca.Cert) {
				t.Fatal("CACerts is not the CA")
			}
			if err := handshake(t, b.Server, b.Client(), "hs1"); err != nil {
				t.Fatalf("handshake: %v", err)
			}
		})
	}
}

func TestEveryStartIssuesAFreshCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	a, err := Load("hs1", caFiles(ca), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Load("hs1", caFiles(ca), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if a.Leaf.SerialNumber.Cmp(b.Leaf.SerialNumber) == 0 || a.Leaf.PublicKey.(*ecdsa.PublicKey).Equal(b.Leaf.PublicKey) {
		t.Fatal("two starts served the same certificate or key")
	}
}

func TestServerNameForms(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	cases := []struct {
		serverName, dial, dns, ip string
	}{
		{"hs1", "hs1", "hs1", ""},
		{"example.org:8448", "example.org", "example.org", ""},
		{"Example.ORG", "example.org", "example.org", ""},
		{"127.0.0.1:8448", "127.0.0.1", "", "127.0.0.1"},
		{"127.0.0.1", "127.0.0.1", "", "127.0.0.1"},
		{"[::1]:8448", "::1", "", "::1"},
		{"[2001:db8::1]", "2001:db8::1", "", "2001:db8::1"},
	}
	for _, c := range cases {
		t.Run(c.serverName, func(t *testing.T) {
			b, err := Load(c.serverName, caFiles(ca), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			l := b.Leaf
			if c.dns != "" && (len(l.DNSNames) != 1 || l.DNSNames[0] != c.dns || len(l.IPAddresses) != 0) {
				t.Fatalf("want DNS SAN %s, got dns %v ip %v", c.dns, l.DNSNames, l.IPAddresses)
			}
			if c.ip != "" && (len(l.IPAddresses) != 1 || !l.IPAddresses[0].Equal(net.ParseIP(c.ip)) || len(l.DNSNames) != 0) {
				t.Fatalf("want IP SAN %s, got dns %v ip %v", c.ip, l.DNSNames, l.IPAddresses)
			}
			if err := handshake(t, b.Server, b.Client(), c.dial); err != nil {
				t.Fatalf("handshake as %s: %v", c.dial, err)
			}
		})
	}
}

func TestHost(t *testing.T) {
	good := map[string]string{"hs1": "hs1", "a.b:1": "a.b", "1.2.3.4:5": "1.2.3.4", "[::1]": "::1", "[::1]:80": "::1", "HS1": "hs1"}
	for in, want := range good {
		if got, err := Host(in); err != nil || got != want {
			t.Errorf("Host(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":8448", "[::1", "[1.2.3.4]", "[zz]:1", "a:b:c"} {
		if got, err := Host(in); err == nil {
			t.Errorf("Host(%q) = %q, want error", in, got)
		}
	}
}

func TestUntrustedCAFailsHandshake(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.ECPKCS8)
	other := tlstest.NewCA(t, tlstest.ECPKCS8)
	b, err := Load("hs1", caFiles(ca), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	o, err := Load("hs2", caFiles(other), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	err = handshake(t, b.Server, o.Client(), "hs1")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Fatalf("handshake with another CA's roots: %v", err)
	}
	// The right roots but the wrong name fails too.
	if err := handshake(t, b.Server, b.Client(), "hs2"); err == nil {
		t.Fatal("handshake for the wrong name succeeded")
	}
}

func TestPlainCertificateFiles(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.RSAPKCS1)
	issued, err := Issue(ca.Cert, ca.Key, "matrix.example.org", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	var chain []byte
	for _, der := range issued.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(issued.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, chain)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))

	// Without a CA: served as is, system roots for outgoing requests.
	b, err := Load("other.name", Files{Cert: certFile, Key: keyFile}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !b.Leaf.Equal(issued.Leaf) {
		t.Fatal("the configured certificate is not the one served")
	}
	if b.Roots != nil || b.Client().RootCAs != nil {
		t.Fatal("roots set without a CA")
	}
	cli := &tls.Config{RootCAs: ca.Pool()}
	if err := handshake(t, b.Server, cli, "matrix.example.org"); err != nil {
		t.Fatal(err)
	}

	// With a CA as well: the files are served, the CA is the only root.
	b, err = Load("other.name", Files{Cert: certFile, Key: keyFile, CACert: ca.CertFile, CAKey: ca.KeyFile}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !b.Leaf.Equal(issued.Leaf) || b.Roots == nil || !b.Roots.Equal(ca.Pool()) {
		t.Fatal("cert files with a CA: wrong leaf or roots")
	}
}

func TestValidityNotBeyondCA(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "short CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	c, err := Issue(ca, key, "hs1", now)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.NotAfter.Equal(ca.NotAfter) {
		t.Fatalf("leaf expires %v, CA %v", c.Leaf.NotAfter, ca.NotAfter)
	}
	if _, err := Issue(ca, key, "hs1", now.Add(31*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired CA: %v", err)
	}
	// A certificate without CA:TRUE cannot issue.
	tmpl.IsCA, tmpl.KeyUsage = false, x509.KeyUsageDigitalSignature
	der, _ = x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	notCA, _ := x509.ParseCertificate(der)
	if _, err := Issue(notCA, key, "hs1", now); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("non-CA: %v", err)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadErrors(t *testing.T) {
	ca := tlstest.NewCA(t, tlstest.RSAPKCS1)
	other := tlstest.NewCA(t, tlstest.ECSEC1)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("not pem at all\n"))
	encrypted := filepath.Join(dir, "enc.key")
	writeFile(t, encrypted, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	badDER := filepath.Join(dir, "bad.key")
	writeFile(t, badDER, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	missing := filepath.Join(dir, "missing")

	cases := []struct {
		name  string
		files Files
		want  string
	}{
		{"nothing", Files{}, "no TLS certificate configured"},
		{"cert without key", Files{Cert: ca.CertFile}, "go together"},
		{"ca without key", Files{CACert: ca.CertFile}, "go together"},
		{"missing ca cert", Files{CACert: missing, CAKey: ca.KeyFile}, "tls_ca_cert"},
		{"missing ca key", Files{CACert: ca.CertFile, CAKey: missing}, "tls_ca_key"},
		{"garbage ca cert", Files{CACert: garbage, CAKey: ca.KeyFile}, "no PEM CERTIFICATE"},
		{"garbage ca key", Files{CACert: ca.CertFile, CAKey: garbage}, "no PEM private key"},
		{"encrypted ca key", Files{CACert: ca.CertFile, CAKey: encrypted}, "encrypted"},
		{"corrupt ca key", Files{CACert: ca.CertFile, CAKey: badDER}, "RSA PRIVATE KEY"},
		{"key of another ca", Files{CACert: ca.CertFile, CAKey: other.KeyFile}, "does not belong"},
		{"cert files mismatched", Files{Cert: ca.CertFile, Key: other.KeyFile}, "tls_cert/tls_key"},
		{"missing cert files", Files{Cert: missing, Key: missing}, "tls_cert/tls_key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Load("hs1", c.files, time.Now())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, %v; want error containing %q", b, err, c.want)
			}
		})
	}
}

func BenchmarkLoadFromCA(b *testing.B) {
	ca := tlstest.NewCA(b, tlstest.RSAPKCS1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load("hs1", caFiles(ca), time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
