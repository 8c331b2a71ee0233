//go:build !linux

package main

import "syscall"

// procAttr puts a child in its own process group.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// groupAlive reports whether a process of the group exists.
func groupAlive(pgid int) bool { return syscall.Kill(-pgid, 0) == nil }
