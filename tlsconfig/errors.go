package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
)

// Error is a connection failure explained: which server, what to check, and the
// driver's own error (the certificate problem, the server's refusal).
type Error struct {
	// Server names the server for people: "source 10.0.0.5:3306".
	Server string
	// Hint says what went wrong and which settings to check.
	Hint string
	Err  error
}

func (e *Error) Error() string { return e.Server + ": " + e.Hint + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Explain returns err as an *Error naming server when it is a TLS failure the
// user can fix in the settings at field ("source.tls"): the server's certificate
// not trusted, the server refusing the client certificate, or TLS spoken to a
// plaintext port. Other errors are returned unchanged; so is nil.
func Explain(server, field string, err error) error {
	if err == nil {
		return nil
	}
	var known *Error
	if errors.As(err, &known) {
		return err
	}
	var hint string
	switch {
	case VerifyFailed(err):
		hint = "TLS: the server's certificate is not trusted (check " + field + ".ca and " + field + ".server_name)"
	case refusedByServer(err):
		hint = "TLS: the server refused the handshake (does it want a client certificate? check " + field + ".cert and " + field + ".key)"
	case strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
		hint = "TLS: the server does not speak TLS on this port (turn " + field + " off or use its TLS port)"
	default:
		return err
	}
	return &Error{Server: server, Hint: hint, Err: err}
}

// Required returns the error of a server that refused a plaintext connection
// because it accepts only TLS ones; field is the setting that turns TLS on.
func Required(server, field string, err error) error {
	return &Error{Server: server, Hint: "the server accepts only TLS connections and this one is plaintext: set " + field, Err: err}
}

// VerifyFailed reports whether err is this side refusing the server's
// certificate (unknown authority, wrong name, expired). Drivers that flatten
// errors to text are recognised by Go's messages.
func VerifyFailed(err error) bool {
	var (
		cv *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
		ci x509.CertificateInvalidError
	)
	if errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "tls: failed to verify certificate") || strings.Contains(s, "x509: ")
}

// refusedByServer reports whether the server ended the handshake with an
// alert (bad or missing client certificate, no common protocol).
// crypto/tls reports those as a *net.OpError "remote error" holding an
// unexported alert type, hence the text.
func refusedByServer(err error) bool {
	return strings.Contains(err.Error(), "remote error: tls: ")
}
