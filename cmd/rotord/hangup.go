package main

import (
	"context"
	"errors"
	"fmt"
	"os/signal"
	"syscall"
)

// hangupStops runs a command that changes hosts (rotate, rollback,
// recover) on a context that SIGHUP cancels as SIGTERM and SIGINT cancel
// ctx: a terminal that drops (an SSH session to the jump host closing)
// makes the command finish or revert the rotations in flight and exit 130,
// instead of dying with them unfinished. The daemon keeps SIGHUP for a
// reload.
func hangupStops(ctx context.Context, run func(context.Context) error) error {
	hup, stop := signal.NotifyContext(ctx, syscall.SIGHUP)
	defer stop()
	err := run(hup)
	if err != nil && hup.Err() != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		err = fmt.Errorf("%w (SIGHUP): %w", errInterrupted, err)
	}
	return err
}
