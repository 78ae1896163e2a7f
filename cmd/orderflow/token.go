package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/orderflow/orderflow/gateway"
)

// token runs `orderflow token`: it mints an HS256 bearer token for the
// gateway, for development. The secret comes from ORDERFLOW_JWT_SECRET.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	subject := fs.String("sub", "", "client id: the customer id for role customer (required)")
	role := fs.String("role", gateway.RoleCustomer, "customer or admin")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	issuer := fs.String("iss", orDefault(getenv("ORDERFLOW_JWT_ISSUER"), settingDefault("ORDERFLOW_JWT_ISSUER")), "issuer ($ORDERFLOW_JWT_ISSUER)")
	audience := fs.String("aud", orDefault(getenv("ORDERFLOW_JWT_AUDIENCE"), settingDefault("ORDERFLOW_JWT_AUDIENCE")), "audience ($ORDERFLOW_JWT_AUDIENCE)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := getenv("ORDERFLOW_JWT_SECRET")
	if secret == "" || *subject == "" || fs.NArg() > 0 {
		return errors.New("token: set ORDERFLOW_JWT_SECRET and give --sub (and optionally --role, --ttl)")
	}
	t, err := gateway.MintToken([]byte(secret), *issuer, *audience, *subject, *role, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, t)
	return err
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
