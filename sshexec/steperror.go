package sshexec

import (
	"errors"
	"fmt"

	"github.com/rotord/rotord/rotation"
)

// Step names one step of a path to the rotated account.
type Step string

// The steps of a path.
const (
	// StepLogon: the logon account opens the SSH session.
	StepLogon Step = "logon"
	// StepSu: the logon account becomes the target with su, answering
	// with the target's password (also how a password is verified).
	StepSu Step = "su"
	// StepSudo: the logon account runs a command as root through sudo.
	StepSudo Step = "sudo"
	// StepCheck: the escalated shell proves it runs as the target.
	StepCheck Step = "check"
)

// Reasons a step failed, carried in StepError.Err. errors.Is finds them
// through a *StepError. Only ErrSuRefused (and ErrSuUnknown and
// ErrSuCutOff, whose verdict never came) concern the rotated password: they satisfy
// rotation.ErrAuthFailed (rotation.ErrLoginUnknown) and count towards the
// host's refusal budget. The others are about the logon account or the
// host's configuration; none of them is worth a blind retry.
var (
	// ErrLogonRefused: sshd refused the logon account's password.
	ErrLogonRefused = errors.New("the host refused the logon account's password")
	// ErrLogonKeyRefused: sshd refused the logon key. The SSH protocol does
	// not tell a key missing from authorized_keys from a key type sshd's
	// PubkeyAcceptedAlgorithms leaves out: the message names both.
	ErrLogonKeyRefused = errors.New("the host refused the logon key (not in the account's authorized_keys, or its type not in sshd's PubkeyAcceptedAlgorithms)")
	// ErrLogonMethod: sshd offers no authentication method the logon
	// credential can use (password logins off for a password, public keys
	// off for a key).
	ErrLogonMethod = errors.New("the host offers no authentication method for the logon credential")
	// ErrSuRefused: su refused the target's password. It satisfies
	// rotation.ErrAuthFailed.
	ErrSuRefused = fmt.Errorf("su refused the target's password: %w", rotation.ErrAuthFailed)
	// ErrSuUnknown: su was given the target's password and gave no verdict
	// in time. It satisfies rotation.ErrLoginUnknown.
	ErrSuUnknown = fmt.Errorf("su got the target's password and gave no verdict: %w", rotation.ErrLoginUnknown)
	// ErrSuCutOff: su's channel ended before su asked for the password or
	// said anything, without su's exit status: the session was cut (the
	// connection or the host's sshd died) while su may have been starting
	// its authentication. su then fails it through PAM on a terminal that
	// is gone, which pam_faillock counts as a refusal although no password
	// reached su, so it satisfies rotation.ErrLoginUnknown.
	ErrSuCutOff error = suCutOff{}
	// ErrSuDenied: su denied the logon account before judging the password
	// (pam_wheel: the logon account is not in the wheel group, or another
	// PAM rule): "su: Permission denied".
	ErrSuDenied = errors.New("su denied the logon account (pam_wheel: not in group wheel, or another PAM rule)")
	// ErrSuNoPassword: su let the account in without asking a password
	// (the logon account is root, or PAM trusts it), so nothing proved the
	// password. Root logging in itself by key cannot have its password
	// proven this way: use a logon account and su.
	ErrSuNoPassword = errors.New("su asked no password, so it proves none (the logon account is root or PAM trusts it)")
	// ErrSudoRefused: sudo refused the logon account's password ("Sorry,
	// try again."); it was not sent again.
	ErrSudoRefused = errors.New("sudo refused the logon account's password")
	// ErrNotInSudoers: sudoers gives the logon account no right to run the
	// command as root.
	ErrNotInSudoers = errors.New("sudoers does not let the logon account run the command as root")
	// ErrSudoPasswordRequired: sudo wants a password and the path has none
	// for the logon account (it logs in by key and sudoers says no NOPASSWD).
	ErrSudoPasswordRequired = errors.New("sudo requires a password and the path has none for the logon account")
	// ErrSudoTTY: sudo refused to run without a terminal (requiretty).
	ErrSudoTTY = errors.New("sudo requires a terminal")
	// ErrNotTarget: the escalated shell does not run as the target account.
	ErrNotTarget = errors.New("the escalated shell does not run as the target account")
	// ErrEscalation: su or sudo said something not understood, or ended
	// without a verdict.
	ErrEscalation = errors.New("unexpected output while escalating")
)

// suCutOff is ErrSuCutOff: rotation.ErrLoginUnknown without its words,
// which say a password was sent.
type suCutOff struct{}

func (suCutOff) Error() string {
	return "su's session was cut before su asked for the password (PAM may count that as a refusal)"
}

// Is makes ErrSuCutOff satisfy rotation.ErrLoginUnknown.
func (suCutOff) Is(target error) bool { return target == rotation.ErrLoginUnknown }

// StepError is a failure of one step of a path: which host, which step,
// as which account and why. Its texts never hold a credential.
type StepError struct {
	Host       string // host:port
	Step       Step
	User       string // the account of the step: the logon account for logon and sudo, the target for su and check
	Method     string // for StepLogon: "password" or "key <type>"
	Err        error  // why: one of the reasons above, or a cause satisfying rotation.ErrUnreachable / ErrLoginUnknown
	Transcript string // what su or sudo said, redacted
}

// Error names the host, the step and the reason.
func (e *StepError) Error() string {
	who := e.User
	if e.Method != "" {
		who += " by " + e.Method
	}
	return fmt.Sprintf("host %s: step %s (%s): %v", e.Host, e.Step, who, e.Err)
}

// Unwrap returns the reason.
func (e *StepError) Unwrap() error { return e.Err }

// Is reports that a StepError satisfies rotation.ErrBeforePasswd: every
// step of a path (logon, su, sudo, check) comes before passwd, so a
// failed one changed nothing on the host.
func (e *StepError) Is(target error) bool { return target == rotation.ErrBeforePasswd }
