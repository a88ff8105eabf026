//go:build !rotord_faults

package rotation

// faultPoint marks a step boundary of the protocol. In normal builds it
// does nothing; builds with the rotord_faults tag can kill the process here
// to test crash recovery.
func faultPoint(string) {}
