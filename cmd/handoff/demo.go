package main

import (
	"context"
	"fmt"
)

func runDemo(ctx context.Context, e env, args []string) int {
	fmt.Fprintln(e.stderr, "handoff demo: not wired yet")
	return exitFail
}
