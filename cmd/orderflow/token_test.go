package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

func TestTokenMintsAVerifiableToken(t *testing.T) {
	t.Parallel()
	secret := strings.Repeat("s", 32)
	var out bytes.Buffer
	err := run(context.Background(), []string{"token", "--sub", "c-42", "--role", "admin"},
		env(map[string]string{"ORDERFLOW_JWT_SECRET": secret}), &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer("orderflow"), jwt.WithAudience("orderflow-api"), jwt.WithExpirationRequired()); err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if claims["sub"] != "c-42" || claims["role"] != "admin" {
		t.Fatalf("claims = %v", claims)
	}
	for _, args := range [][]string{{"token"}, {"token", "--sub", "c-1", "--role", "root"}} {
		if err := run(context.Background(), args, env(map[string]string{"ORDERFLOW_JWT_SECRET": secret}), io.Discard, io.Discard); err == nil {
			t.Fatalf("%v accepted", args)
		}
	}
	if err := run(context.Background(), []string{"token", "--sub", "c-1"}, env(nil), io.Discard, io.Discard); err == nil {
		t.Fatal("a token was minted without a secret")
	}
}
