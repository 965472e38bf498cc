// Package clamd is a small client for the ClamAV daemon's INSTREAM command:
// content is streamed to clamd in size-prefixed chunks and the verdict read
// back ("stream: OK" or "stream: <signature> FOUND").
//
// clamd refuses streams longer than its StreamMaxLength (25 MB by default):
// set it at least as large as the server's max_upload_bytes, or large
// uploads fail to scan (and are then treated like an unreachable scanner).
package clamd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Client talks to one clamd.
type Client struct {
	Network string // "tcp" or "unix"
	Address string
	// Timeout bounds one whole scan (connect, stream, verdict); 0 means 2 minutes.
	Timeout time.Duration
}

// Parse reads an address of the form tcp:HOST:PORT or unix:/path/to/socket.
func Parse(addr string) (*Client, error) {
	network, rest, ok := strings.Cut(addr, ":")
	if !ok || rest == "" {
		return nil, fmt.Errorf("clamd address %q: want tcp:HOST:PORT or unix:/path", addr)
	}
	switch network {
	case "tcp":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return nil, fmt.Errorf("clamd address %q: %v", addr, err)
		}
	case "unix":
		if !strings.HasPrefix(rest, "/") {
			return nil, fmt.Errorf("clamd address %q: the socket path must be absolute", addr)
		}
	default:
		return nil, fmt.Errorf("clamd address %q: want tcp:HOST:PORT or unix:/path", addr)
	}
	return &Client{Network: network, Address: rest}, nil
}

// Result is clamd's verdict on one stream.
type Result struct {
	Infected  bool
	Signature string // the signature name when Infected
}

// ErrUnavailable wraps every failure to obtain a verdict: clamd not
// reachable, a broken connection, a timeout or an error reply (such as
// "INSTREAM size limit exceeded").
var ErrUnavailable = errors.New("clamd unavailable")

// chunkSize is the size of the chunks sent to clamd.
const chunkSize = 64 << 10

// maxReply bounds clamd's answer.
const maxReply = 4096

// Scan streams r to clamd and returns the verdict.
func (c *Client) Scan(ctx context.Context, r io.Reader) (Result, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Address)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	// Closing the connection unblocks reads and writes when ctx ends early.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	reply, err := instream(conn, r)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Result{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return parseReply(reply)
}

// instream runs the INSTREAM exchange on conn. clamd may answer (and close)
// before the stream ends, for example when the size limit is exceeded, so a
// write error is reported only if no reply can be read.
func instream(conn net.Conn, r io.Reader) (string, error) {
	w := bufio.NewWriterSize(conn, chunkSize+4)
	var werr error
	if _, err := w.WriteString("zINSTREAM\x00"); err != nil {
		werr = err
	}
	buf := make([]byte, chunkSize)
	var hdr [4]byte
	for werr == nil {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			binary.BigEndian.PutUint32(hdr[:], uint32(n))
			if _, werr = w.Write(hdr[:]); werr == nil {
				_, werr = w.Write(buf[:n])
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read content: %w", err)
		}
	}
	if werr == nil {
		binary.BigEndian.PutUint32(hdr[:], 0)
		if _, werr = w.Write(hdr[:]); werr == nil {
			werr = w.Flush()
		}
	}
	reply, rerr := readReply(conn)
	if rerr != nil {
		if werr != nil {
			return "", werr
		}
		return "", rerr
	}
	return reply, nil
}

func readReply(conn net.Conn) (string, error) {
	br := bufio.NewReader(io.LimitReader(conn, maxReply))
	s, err := br.ReadString(0)
	if err != nil && !(err == io.EOF && s != "") {
		return "", fmt.Errorf("read reply: %w", err)
	}
	return strings.TrimRight(s, "\x00\n"), nil
}

// parseReply understands "stream: OK", "stream: NAME FOUND" and
// "... ERROR" (with or without the "stream: " prefix, which clamd omits
// for some errors).
func parseReply(reply string) (Result, error) {
	body := strings.TrimPrefix(reply, "stream: ")
	switch {
	case body == "OK":
		return Result{}, nil
	case strings.HasSuffix(body, " FOUND"):
		return Result{Infected: true, Signature: strings.TrimSuffix(body, " FOUND")}, nil
	default:
		return Result{}, fmt.Errorf("%w: clamd answered %q", ErrUnavailable, reply)
	}
}

// Ping checks that clamd answers PING with PONG.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.Network, c.Address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	reply, err := readReply(conn)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if !bytes.Equal([]byte(reply), []byte("PONG")) {
		return fmt.Errorf("%w: clamd answered %q to PING", ErrUnavailable, reply)
	}
	return nil
}
