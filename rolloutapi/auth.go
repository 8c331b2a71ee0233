package rolloutapi

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Role is what a token may do.
type Role string

const (
	// RoleRead may list and read rollouts and their history, and scrape
	// metrics.
	RoleRead Role = "read"
	// RoleOperate may also run commands (promote, abort, retry, pause,
	// resume).
	RoleOperate Role = "operate"
)

// Token is one caller of the API: a name, which becomes the actor of its
// commands, a role, and the SHA-256 of the secret it presents. Only the
// hash is kept, so the configuration file that lists tokens holds no
// secret; tokens are 256 random bits (NewToken), so a plain hash is enough.
type Token struct {
	Name   string
	Role   Role
	SHA256 [sha256.Size]byte
}

// Identity is who a request authenticated as.
type Identity struct {
	Name string
	Role Role
}

// May reports whether the identity's role allows what need asks for.
func (id Identity) May(need Role) bool {
	return need == RoleRead || id.Role == RoleOperate
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][-_.@A-Za-z0-9]{0,63}$`)

// ParseToken checks one configured token; key names it in errors.
func ParseToken(key, name string, role Role, sum string) (Token, error) {
	t := Token{Name: name, Role: role}
	if !tokenName.MatchString(name) {
		return t, fmt.Errorf("%s.name: %q: want 1-64 letters, digits, '-', '_', '.' or '@'", key, name)
	}
	if role != RoleRead && role != RoleOperate {
		return t, fmt.Errorf("%s.role: %q: want %s or %s", key, role, RoleRead, RoleOperate)
	}
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size {
		return t, fmt.Errorf("%s.sha256: want the 64 hex digits of the token's SHA-256 (sluice token prints them)", key)
	}
	copy(t.SHA256[:], b)
	return t, nil
}

// NewToken returns a fresh secret and its SHA-256 in hex.
func NewToken() (secret, sum string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("new token: %w", err)
	}
	secret = "sluice_" + hex.EncodeToString(b[:])
	return secret, HashToken(secret), nil
}

// HashToken is the SHA-256 of a secret in hex, as the configuration keeps it.
func HashToken(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// authenticate finds the token a request presents as "Authorization:
// Bearer <secret>".
func authenticate(tokens []Token, r *http.Request) (Identity, bool) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return Identity{}, false
	}
	return Authenticate(tokens, secret)
}

// Authenticate finds the token whose secret is secret (the dashboard's
// login form takes one). Every configured token is compared, in constant
// time, so the time taken says nothing about which one nearly matched.
func Authenticate(tokens []Token, secret string) (Identity, bool) {
	if secret == "" {
		return Identity{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	var found *Token
	for i := range tokens {
		if subtle.ConstantTimeCompare(sum[:], tokens[i].SHA256[:]) == 1 {
			found = &tokens[i]
		}
	}
	if found == nil {
		return Identity{}, false
	}
	return Identity{Name: found.Name, Role: found.Role}, true
}
