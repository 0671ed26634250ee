// Package wsfast is the hub's fast WebSocket path: the parts of a
// WebSocket connection that the hub does itself, on the connection
// github.com/coder/websocket accepted, rather than through the library.
//
//   - Framing (frame.go): the hub's data frames, built whole in a buffer
//     (AppendFrame; ReserveHeader and FinishFrame) and its pings
//     (WritePing), each written with one Write on the hijacked net.Conn.
//   - The writing end (out.go, trywrite_*.go): Out, through which the
//     hub's frames and the library's control frames leave whole, and its
//     TryWrite, which writes what a socket takes now without waiting and
//     keeps a begun frame's rest for the writer to finish.
//   - The hijacker (hijack.go): Hijacker keeps the net.Conn and the
//     library's read buffer, hands the library small buffers, and carries
//     over the bytes a client sent right behind its upgrade request.
//   - The shallow reader (reader.go, readable_*.go): Reader waits for a
//     connection's next bytes without reading them, on a shallow stack
//     (Await), and takes the client's pongs off the head of the read
//     buffer (TakePong), so that an idle connection is not parked deep in
//     the library's read.
//   - The socket calls: Hijacker wraps the hijacked connection with
//     internal/rawsock (on linux/amd64 and linux/arm64), so that every
//     read and write of it (the library's through its buffers, the hub's
//     through Out) and the shallow reader's peek and TryWrite's writes
//     skip the runtime's system-call bookkeeping, which would wake its
//     sysmon each time the hub had gone idle. A TLS connection is left as
//     it is.
//
// The library's data-frame writer is skipped on the fan-out path (its
// write mutex, its bookkeeping and the copy into its buffer), and the
// library keeps small buffers instead of net/http's 4 KiB ones for the
// life of the connection. The library does the rest of the protocol: the
// handshake, reading messages, control frames, the close handshake.
//
// # What it relies on
//
// None of this is the library's API: it is how the library behaves, read
// in its source at CheckedVersion (v1.8.15). When go.mod names another
// version, TestCheckedVersion fails; re-check each point below against the
// new version's accept.go, hijack.go, read.go, write.go and close.go, run
// this package's tests and the hub's (go test -race ./hub/...), and only
// then change CheckedVersion.
//
//  1. Accept finds the http.Hijacker through the ResponseWriter it is given
//     (hijack.go), and reads and writes only through the bufio.ReadWriter
//     that Hijack returns, as they are (accept.go, newConn). It resets that
//     Reader to read what it buffered first, from behind its back: bytes
//     that came behind the upgrade request are then not Buffered (hence
//     Hijacker's bytesAfterUpgrade).
//  2. It writes every control frame (ping, pong, close; at most 127 bytes
//     from a server, RFC 6455 §5.5) into that bufio.Writer and flushes it
//     once per frame (write.go, writeFrame): with a buffer of
//     wireControlBuf bytes each control frame leaves in one Write. A
//     net.Conn's Write calls do not interleave (the descriptor's write
//     lock, tls.Conn's output lock), so the library's control frames and
//     the hub's data frames, each written whole with one Write, share the
//     connection safely. The library's writer writes through Out, whose
//     lock also keeps a control frame out of a data frame that TryWrite
//     could only begin. The hub never calls the library's Write or Writer.
//  3. Compression is off: AcceptOptions.CompressionMode defaults to
//     CompressionDisabled, and the hub's frames are uncompressed (RSV1
//     clear).
//  4. Once a message the library returned (Conn.Reader) has been read to
//     its end, the library holds no part of the next frame outside the
//     bufio.Reader: its next read starts at a frame header there (read.go),
//     so whole pong frames can be peeked at and discarded in between
//     (TakePong). A pong the library reads itself goes to
//     AcceptOptions.OnPongReceived.
//  5. Its close handshake (Conn.Close) reads the peer's close reply from
//     the same bufio.Reader (close.go, waitCloseHandshake): the writer
//     holds the Reader's lock (Reader.Lock) while it closes.
//
// Which goroutine runs what is stated on each function: the framing
// functions are pure; Hijacker runs on the upgrade's goroutine; Reader's
// methods run on the connection's reader, but Lock and Unlock, which the
// writer takes around the close handshake.
package wsfast

// CheckedVersion is the version of github.com/coder/websocket against which
// what this package relies on (see the package doc) was checked.
// TestCheckedVersion fails when go.mod requires another.
const CheckedVersion = "v1.8.15"
