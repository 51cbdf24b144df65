package hub

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ErrUnreachable is in the errors of Download that come from not reaching
// the hub at all (a name that does not resolve, a refused connection, a
// failed TLS handshake, a timeout), as opposed to an answer of the hub:
// errors.Is(err, ErrUnreachable) tells them apart, so callers can say
// what to do without the hub.
var ErrUnreachable = errors.New("cannot reach the hub")

// netError marks failures to reach the hub at all (not HTTP statuses).
type netError struct {
	endpoint string
	err      error
}

// Error says which hub could not be reached and why in a few words, then
// the transport's own error, then what to do.
func (e *netError) Error() string {
	why := ""
	if c := unreachableCause(e.err); c != "" {
		why = " (" + c + ")"
	}
	return fmt.Sprintf("hub: cannot reach the hub %s%s: %v; set HF_ENDPOINT to a hub you can reach, or HF_HUB_OFFLINE=1 to use only the models already in the hub cache",
		e.endpoint, why, e.err)
}

func (e *netError) Unwrap() error { return e.err }

func (e *netError) Is(target error) bool { return target == ErrUnreachable }

// unreachableCause names, in a few words, why a request never got an
// answer; "" when the error is of no known kind.
func unreachableCause(err error) string {
	var dns *net.DNSError
	var certInvalid x509.CertificateInvalidError
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &dns) && dns.IsNotFound:
		return "the name " + dns.Name + " does not resolve"
	case errors.As(err, &dns):
		return "looking up " + dns.Name + " failed"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return "no route to the hub"
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &certInvalid):
		return "its TLS certificate is not trusted: behind a TLS-intercepting proxy, add its CA to SSL_CERT_FILE"
	case errors.As(err, &record), errors.As(err, &alert):
		return "the TLS handshake failed"
	case errors.As(err, &timeout) && timeout.Timeout():
		return "timed out"
	}
	return ""
}
