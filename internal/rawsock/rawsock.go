// Package rawsock reads and writes sockets without the Go runtime's
// system-call bookkeeping: for the connections a busy server reads and
// writes all the time (the hub's WebSockets, a node's Redis connections).
//
// # Why
//
// A Go program's Read or Write on a socket is a non-blocking system call
// that the runtime brackets with entersyscall and exitsyscall, as it does a
// call that may block. When the program had gone idle (every P idle), the
// first such call wakes the runtime's sysmon thread from its deep sleep,
// and sysmon then polls every 20 µs for about a millisecond before it
// sleeps again (runtime/proc.go, sysmon; golang/go#18236). A hub goes idle
// between most of the messages it reads, so at a few thousand messages a
// second that is thousands of wake-ups and context switches a second: 14 %
// of hubd's CPU in a profile at 20 × 25 clients × 5 Hz with a write delay
// (BENCHMARKS.md, "Socket calls that let sysmon sleep"). The calls of a
// connection from Wrap go through syscall.RawSyscall, which skips that
// bracket, so sysmon stays asleep.
//
// # Why it is safe
//
// RawSyscall is for calls that do not block: the runtime keeps the P
// while one runs. The sockets here are in non-blocking mode (the net
// package sets every socket it makes so), so read(2), write(2) and
// recvfrom(2) with MSG_DONTWAIT return at once, with EAGAIN when the
// socket has nothing to give or no room; the waiting is then the
// runtime's poller's, through syscall.RawConn, as for any net.Conn, and
// deadlines and Close end it as they do a net.Conn's. A call still costs
// what the kernel spends in it (on loopback, a write runs the receiving
// end's TCP too), and no more than that without the bracket.
//
// The raw path is built for linux/amd64 and linux/arm64. Elsewhere Wrap
// returns its connection as it is, and Peek and WriteNow make ordinary
// system calls.
package rawsock
