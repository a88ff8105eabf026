package sstest

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/md4" //lint:ignore SA1019 NTLM's NT hash is MD4 by definition (MS-NLMP 3.3.1)
)

// NTLM message types and the flags the emulator's CHALLENGE offers.
const (
	ntlmNegotiate    = 1
	ntlmChallenge    = 2
	ntlmAuthenticate = 3

	flagUnicode        = 1 << 0
	flagRequestTarget  = 1 << 2
	flagNTLM           = 1 << 9
	flagAlwaysSign     = 1 << 15
	flagTargetDomain   = 1 << 16
	flagExtendedSecure = 1 << 19
	flagTargetInfo     = 1 << 23
	flag128            = 1 << 29
	flag56             = 1 << 31
)

var ntlmSignature = []byte("NTLMSSP\x00")

// ntlmConn is the NTLM state of one TCP connection: the challenge sent on
// it, and the user once a handshake on it succeeded (IIS keeps a
// connection authenticated).
type ntlmConn struct {
	challenge []byte
	user      string
}

// ntlmDomain is the NetBIOS domain the emulator announces.
const ntlmDomain = "SSTEST"

// ntlmAuth runs the server side of the NTLM handshake for one request.
// It returns the authenticated user, or "" after writing a 401.
func (s *Server) ntlmAuth(w http.ResponseWriter, r *http.Request) string {
	nc, _ := r.Context().Value(connKey{}).(*ntlmConn)
	if nc == nil {
		s.ntlmDeny(w, "", nil)
		return ""
	}
	scheme, tokenB64, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if scheme != "NTLM" && scheme != "Negotiate" {
		s.mu.Lock()
		user := nc.user
		s.mu.Unlock()
		if user != "" && r.Header.Get("Authorization") == "" {
			return user
		}
		s.ntlmDeny(w, "", nil)
		return ""
	}
	msg, err := base64.StdEncoding.DecodeString(strings.TrimSpace(tokenB64))
	if err != nil || len(msg) < 12 || !bytes.Equal(msg[:8], ntlmSignature) {
		s.ntlmDeny(w, "", nil)
		return ""
	}
	switch binary.LittleEndian.Uint32(msg[8:12]) {
	case ntlmNegotiate:
		ch := make([]byte, 8)
		_, _ = rand.Read(ch)
		s.mu.Lock()
		nc.challenge = ch
		nc.user = ""
		s.mu.Unlock()
		s.ntlmDeny(w, scheme, challengeMessage(ch, time.Now()))
		return ""
	case ntlmAuthenticate:
		s.mu.Lock()
		ch := nc.challenge
		nc.challenge = nil
		s.mu.Unlock()
		user, domain, err := s.verifyAuthenticate(msg, ch)
		if err != nil {
			s.mu.Lock()
			s.ntlmFailures++
			s.mu.Unlock()
			s.ntlmDeny(w, "", nil)
			return ""
		}
		s.mu.Lock()
		nc.user = user
		s.ntlmHandshakes++
		s.mu.Unlock()
		_ = domain
		return user
	}
	s.ntlmDeny(w, "", nil)
	return ""
}

// ntlmDeny answers 401 as IIS does: the challenge when there is one, else
// both scheme offers, with an HTML body.
func (s *Server) ntlmDeny(w http.ResponseWriter, scheme string, challenge []byte) {
	if challenge != nil {
		w.Header().Set("WWW-Authenticate", scheme+" "+base64.StdEncoding.EncodeToString(challenge))
	} else {
		w.Header().Add("WWW-Authenticate", "Negotiate")
		w.Header().Add("WWW-Authenticate", "NTLM")
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("<!DOCTYPE html><html><head><title>401 - Unauthorized: Access is denied due to invalid credentials.</title></head><body><h2>401 - Unauthorized</h2></body></html>"))
}

func utf16le(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

func fromUTF16LE(b []byte) (string, error) {
	if len(b)%2 != 0 {
		return "", errors.New("odd UTF-16 length")
	}
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u)), nil
}

// challengeMessage builds a CHALLENGE_MESSAGE (MS-NLMP 2.2.1.2) without
// the version field, announcing NTLMv2 only (no LM key, no key exchange).
func challengeMessage(challenge []byte, now time.Time) []byte {
	target := utf16le(ntlmDomain)
	var info bytes.Buffer
	av := func(id uint16, v []byte) {
		_ = binary.Write(&info, binary.LittleEndian, id)
		_ = binary.Write(&info, binary.LittleEndian, uint16(len(v)))
		info.Write(v)
	}
	av(2, utf16le(ntlmDomain))        // MsvAvNbDomainName
	av(1, utf16le("SSTEST-EMULATOR")) // MsvAvNbComputerName
	ts := make([]byte, 8)
	binary.LittleEndian.PutUint64(ts, uint64(now.UnixNano()/100)+116444736000000000)
	av(7, ts) // MsvAvTimestamp
	av(0, nil)

	const header = 48
	var b bytes.Buffer
	b.Write(ntlmSignature)
	_ = binary.Write(&b, binary.LittleEndian, uint32(ntlmChallenge))
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(target)))
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(target)))
	_ = binary.Write(&b, binary.LittleEndian, uint32(header))
	flags := uint32(flagUnicode | flagRequestTarget | flagNTLM | flagAlwaysSign | flagTargetDomain | flagExtendedSecure | flagTargetInfo | flag128 | flag56)
	_ = binary.Write(&b, binary.LittleEndian, flags)
	b.Write(challenge)
	b.Write(make([]byte, 8))
	_ = binary.Write(&b, binary.LittleEndian, uint16(info.Len()))
	_ = binary.Write(&b, binary.LittleEndian, uint16(info.Len()))
	_ = binary.Write(&b, binary.LittleEndian, uint32(header+len(target)))
	b.Write(target)
	b.Write(info.Bytes())
	return b.Bytes()
}

// field reads a security buffer (len, maxlen, offset) at off of msg.
func field(msg []byte, off int) ([]byte, error) {
	if len(msg) < off+8 {
		return nil, errors.New("short message")
	}
	l := int(binary.LittleEndian.Uint16(msg[off:]))
	o := int(binary.LittleEndian.Uint32(msg[off+4:]))
	if o < 0 || o > len(msg) || l > len(msg)-o {
		return nil, errors.New("field out of bounds")
	}
	return msg[o : o+l], nil
}

var errNTLMRefused = errors.New("ntlm authentication refused")

// verifyAuthenticate checks an AUTHENTICATE_MESSAGE against challenge and
// the password of the user it names (MS-NLMP 3.3.2, NTLMv2).
func (s *Server) verifyAuthenticate(msg, challenge []byte) (user, domain string, err error) {
	if challenge == nil || len(msg) < 64 {
		return "", "", errNTLMRefused
	}
	nt, err := field(msg, 20)
	if err != nil || len(nt) < 16+28 {
		return "", "", errNTLMRefused // NTLMv1 or anonymous
	}
	d, err := field(msg, 28)
	if err != nil {
		return "", "", errNTLMRefused
	}
	u, err := field(msg, 36)
	if err != nil {
		return "", "", errNTLMRefused
	}
	if binary.LittleEndian.Uint32(msg[60:])&flagUnicode == 0 {
		return "", "", errNTLMRefused
	}
	if domain, err = fromUTF16LE(d); err != nil {
		return "", "", errNTLMRefused
	}
	if user, err = fromUTF16LE(u); err != nil {
		return "", "", errNTLMRefused
	}
	s.mu.Lock()
	acct, ok := s.lookupUser(user, domain)
	s.mu.Unlock()
	if !ok {
		return "", "", errNTLMRefused
	}
	h := md4.New()
	h.Write(utf16le(acct.password))
	ntowf := hmacMD5(h.Sum(nil), utf16le(strings.ToUpper(user)+domain))
	proof := hmacMD5(ntowf, challenge, nt[16:])
	if subtle.ConstantTimeCompare(proof, nt[:16]) != 1 {
		return "", "", errNTLMRefused
	}
	return acct.name, domain, nil
}

func hmacMD5(key []byte, data ...[]byte) []byte {
	m := hmac.New(md5.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}
