package main

import (
	"context"
	"fmt"
)

func runReview(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "handoff review: not wired yet")
	return exitFail
}
