package main

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): with a source
// address bound, leave the port to connect(2), so that each source address
// has the whole ephemeral range per destination rather than per host.
const ipBindAddressNoPort = 24

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT on an outgoing socket.
func bindNoPort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if network == "tcp4" || network == "tcp" {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
		}
	})
	if err != nil {
		return err
	}
	_ = serr // best effort: without it the kernel picks the port at bind time
	return nil
}
