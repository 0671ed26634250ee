package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
)

// mintToken is `hubd token`: it prints a development token signed with the
// secret of --secret, or the first secret of --secret-file (a file of
// --jwt-secret-file: one secret a line), or else of HUB_JWT_SECRET or
// HUB_JWT_SECRET_FILE.
func mintToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hubd token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 secret (default: $HUB_JWT_SECRET)")
	secretFile := fs.String("secret-file", "", "file of secrets, one a line (as --jwt-secret-file): the first signs")
	sub := fs.String("sub", "", "userId (required)")
	name := fs.String("name", "", "display name")
	role := fs.String("role", "learner", "instructor or learner")
	sessions := fs.String("sessions", "", "comma-separated session ids the token may join (not given or empty: any; only commas, like \",\": none)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	key := *secret
	file := *secretFile
	if key == "" && file == "" {
		key, file = getenv("HUB_JWT_SECRET"), getenv("HUB_JWT_SECRET_FILE")
	}
	if key == "" && file != "" {
		// The file of --jwt-secret-file: the first of its secrets signs.
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		secrets, err := hub.ParseSecrets(b)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		key = string(secrets[0])
	}
	switch {
	case key == "":
		return errors.New("no secret: give --secret, --secret-file or HUB_JWT_SECRET")
	case *sub == "":
		return errors.New("--sub is required")
	case *role != "instructor" && *role != "learner":
		return errors.New("--role must be instructor or learner")
	case *ttl <= 0:
		return errors.New("--ttl must be positive")
	}
	now := time.Now()
	c := hub.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: *sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(*ttl))},
		Name:             *name,
		Role:             *role,
	}
	if *sessions != "" {
		c.Sessions = []string{} // a list with no id allows no session: kept as "sessions": []
		for _, s := range strings.Split(*sessions, ",") {
			if s = strings.TrimSpace(s); s != "" {
				c.Sessions = append(c.Sessions, s)
			}
		}
	}
	if c.Sessions != nil && len(c.Sessions) == 0 {
		fmt.Fprintln(stderr, "hubd token: --sessions lists no session id: the token allows no session")
	}
	tok, err := hub.NewToken([]byte(key), c)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
