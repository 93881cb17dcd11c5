package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TLSCerts is a private certificate authority and what it signed, as PEM files
// in a temporary directory, for servers that require TLS and for clients that
// verify them. Another, unrelated authority (WrongCA) signed nothing: a client
// trusting it must refuse the servers.
type TLSCerts struct {
	// Dir holds the files.
	Dir string
	// CA is the authority's certificate: what clients trust.
	CA string
	// ServerCert and ServerKey are the servers' certificate (for 127.0.0.1 and
	// localhost) and key.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate (CommonName "kanal")
	// signed by CA, for servers that require one.
	ClientCert, ClientKey string
	// WrongCA is a second authority's certificate: it signed nothing here.
	WrongCA string

	caPool     *x509.CertPool
	serverPair tls.Certificate
	clientPair tls.Certificate
}

// NewTLSCerts generates the authorities and certificates (ECDSA P-256, valid
// for a day) into a temporary directory of t. Servers that run as another user
// (Postgres under root) get copies they own through their own options.
func NewTLSCerts(t T) *TLSCerts {
	t.Helper()
	c, err := newTLSCerts(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: TLS certificates: %v", err)
	}
	return c
}

func newTLSCerts(dir string) (*TLSCerts, error) {
	c := &TLSCerts{
		Dir:        dir,
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client.key"),
		WrongCA:    filepath.Join(dir, "wrong-ca.pem"),
	}
	ca, caKey, err := newCA("kanal test CA")
	if err != nil {
		return nil, err
	}
	wrong, _, err := newCA("kanal unrelated CA")
	if err != nil {
		return nil, err
	}
	server, serverKey, err := newLeaf(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	client, clientKey, err := newLeaf(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kanal"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	files := []struct {
		path, kind string
		der        []byte
	}{
		{c.CA, "CERTIFICATE", ca.Raw},
		{c.WrongCA, "CERTIFICATE", wrong.Raw},
		{c.ServerCert, "CERTIFICATE", server},
		{c.ServerKey, "PRIVATE KEY", serverKey},
		{c.ClientCert, "CERTIFICATE", client},
		{c.ClientKey, "PRIVATE KEY", clientKey},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.kind, Bytes: f.der}), 0o600); err != nil {
			return nil, err
		}
	}
	c.caPool = x509.NewCertPool()
	c.caPool.AddCert(ca)
	if c.serverPair, err = tls.LoadX509KeyPair(c.ServerCert, c.ServerKey); err != nil {
		return nil, err
	}
	if c.clientPair, err = tls.LoadX509KeyPair(c.ClientCert, c.ClientKey); err != nil {
		return nil, err
	}
	return c, nil
}

// randomSerial is a certificate serial number; random ones never repeat in
// practice, which clients that cache certificates by serial rely on.
func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"kanal tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// newLeaf returns the DER certificate and PKCS#8 key of tmpl signed by ca.
func newLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = randomSerial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate %s: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	return der, keyDER, err
}

// ServerConfig is a server's *tls.Config: its certificate, and client
// certificates verified against CA when requireClientCert is set.
func (c *TLSCerts) ServerConfig(requireClientCert bool) *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c.serverPair}}
	if requireClientCert {
		tc.ClientCAs = c.caPool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc
}

// ClientConfig is a client's *tls.Config trusting CA and offering the client
// certificate.
func (c *TLSCerts) ClientConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.caPool, Certificates: []tls.Certificate{c.clientPair}}
}
