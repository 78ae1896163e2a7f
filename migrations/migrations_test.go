package migrations_test

import (
	"context"
	"testing"

	"github.com/orderflow/orderflow/internal/dbtest"
	"github.com/orderflow/orderflow/migrations"
)

func TestApplyIsRepeatable(t *testing.T) {
	t.Parallel()
	url := dbtest.MustURL(t) // already migrated once
	ctx := context.Background()
	v1, err := migrations.ApplyURL(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := migrations.ApplyURL(ctx, url)
	if err != nil || v2 != v1 || v1 < 1 {
		t.Fatalf("second apply: version %d → %d, %v", v1, v2, err)
	}
}
