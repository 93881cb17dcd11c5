package producer_test

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// saslRefusingBroker starts an in-test Kafka listener that follows the protocol
// as far as SASL (ApiVersions, SaslHandshake, SaslAuthenticate) and answers every
// credential with SASL_AUTHENTICATION_FAILED (58), as a SASL broker does for a
// wrong password. (kfake closes the connection instead, which a client cannot
// tell from a network failure.) It returns the listener's address.
func saslRefusingBroker(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSASLRefusal(c)
		}
	}()
	return ln.Addr().String()
}

func serveSASLRefusal(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	for {
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		buf := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, buf); err != nil || len(buf) < 10 {
			return
		}
		// Request header: api key, version, correlation id, client id; flexible
		// versions add tagged fields (none here).
		key, version := int16(binary.BigEndian.Uint16(buf)), int16(binary.BigEndian.Uint16(buf[2:]))
		corr := buf[4:8]
		req := kmsg.RequestForKey(key)
		if req == nil {
			return
		}
		req.SetVersion(version)
		body := buf[8:]
		if n := int16(binary.BigEndian.Uint16(body)); n > 0 {
			body = body[n:]
		}
		body = body[2:]
		if req.IsFlexible() {
			body = body[1:]
		}
		if err := req.ReadFrom(body); err != nil {
			return
		}
		var resp kmsg.Response
		switch req.(type) {
		case *kmsg.ApiVersionsRequest:
			av := kmsg.NewPtrApiVersionsResponse()
			for _, k := range []struct{ key, max int16 }{{18, 3}, {17, 1}, {36, 2}, {3, 9}} {
				ak := kmsg.NewApiVersionsResponseApiKey()
				ak.ApiKey, ak.MaxVersion = k.key, k.max
				av.ApiKeys = append(av.ApiKeys, ak)
			}
			resp = av
		case *kmsg.SASLHandshakeRequest:
			hs := kmsg.NewPtrSASLHandshakeResponse()
			hs.SupportedMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
			resp = hs
		case *kmsg.SASLAuthenticateRequest:
			au := kmsg.NewPtrSASLAuthenticateResponse()
			au.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := "Authentication failed: Invalid username or password"
			au.ErrorMessage = &msg
			resp = au
		default:
			return
		}
		resp.SetVersion(version)
		out := append([]byte{0, 0, 0, 0}, corr...)
		if resp.IsFlexible() && key != 18 { // ApiVersions answers with header v0 always
			out = append(out, 0)
		}
		out = resp.AppendTo(out)
		binary.BigEndian.PutUint32(out, uint32(len(out)-4))
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}
