package main

import (
	"context"
	"errors"
	"fmt"
)

// Exit statuses. They are assigned in exitCode alone.
const (
	exitOK          = 0   // everything asked for succeeded
	exitFailed      = 1   // the operation failed (or check found a problem)
	exitUsage       = 2   // bad command line or configuration
	exitPartial     = 3   // some secrets or hosts succeeded, others failed
	exitInterrupted = 130 // stopped by SIGINT or SIGTERM
)

// exitStatusHelp documents the exit statuses in every command's --help.
const exitStatusHelp = `Exit status:
  0    success
  1    failure (check: a problem was found)
  2    usage or configuration error
  3    partial: some secrets succeeded and others failed
  130  interrupted (SIGINT or SIGTERM; rotate, rollback and recover also SIGHUP)`

// usageError is a bad command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// partialError says that some of several operations failed; msg, if set,
// says it in the command's own words.
type partialError struct {
	failed, total int
	msg           string
}

func (e *partialError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return fmt.Sprintf("%d of %d failed", e.failed, e.total)
}

// failedError says that an operation failed and its details were already
// shown; main prints only its short message.
type failedError struct{ msg string }

func (e *failedError) Error() string { return e.msg }

// outcome turns a count of failures among total operations into the
// error that selects the exit status.
func outcome(failed, total int, what string) error {
	switch {
	case failed == 0:
		return nil
	case failed < total:
		return &partialError{failed: failed, total: total}
	default:
		return &failedError{msg: fmt.Sprintf("%s failed", what)}
	}
}

// exitCode maps the error a command returned to the process exit status.
func exitCode(err error) int {
	var (
		ue *usageError
		ce *ConfigError
		pe *partialError
	)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, context.Canceled), errors.Is(err, errInterrupted):
		return exitInterrupted
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	case errors.As(err, &pe):
		return exitPartial
	default:
		return exitFailed
	}
}

// errInterrupted is returned by a command stopped by a signal.
var errInterrupted = errors.New("interrupted")
