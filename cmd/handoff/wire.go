package main

import (
	"context"
	"errors"
)

// wire builds the adapters and the relay from the configuration.
func (a *app) wire(ctx context.Context, ov *overrides) error {
	return errors.New("integrations are not wired yet")
}
