package boltq

import "syscall"

const syscallENOSPC = syscall.ENOSPC
