package testenv

import "syscall"

// sysProcAttr makes a server die with the test process even when t.Cleanup
// never runs (a panic, a -timeout abort or a kill -9 of go test), so no
// stray servers pile up on developer machines and CI hosts.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
}
