//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr sets only the credential: outside Linux there is no parent
// death signal, so servers rely on t.Cleanup alone.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
