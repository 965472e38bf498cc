package clamd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"conclave/internal/clamd"
	"conclave/internal/clamd/clamdtest"
)

func TestParse(t *testing.T) {
	for _, ok := range []string{"tcp:127.0.0.1:3310", "tcp:clamav:3310", "tcp:[::1]:3310", "unix:/run/clamd.sock"} {
		if _, err := clamd.Parse(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "tcp:", "tcp:host", "unix:", "unix:relative.sock", "http://x", "127.0.0.1:3310"} {
		if _, err := clamd.Parse(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// fakeClamd accepts one connection, checks the INSTREAM framing, records
// the streamed bytes and answers reply.
func fakeClamd(t *testing.T, reply string) (*clamd.Client, <-chan []byte) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "c.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan []byte, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		cmd, err := br.ReadString(0)
		if err != nil || cmd != "zINSTREAM\x00" {
			got <- []byte("bad command " + cmd)
			return
		}
		var data bytes.Buffer
		for {
			var n uint32
			if err := binary.Read(br, binary.BigEndian, &n); err != nil {
				got <- []byte("bad frame")
				return
			}
			if n == 0 {
				break
			}
			if n > 64<<10 {
				got <- []byte("chunk too large")
				return
			}
			if _, err := io.CopyN(&data, br, int64(n)); err != nil {
				got <- []byte("short chunk")
				return
			}
		}
		got <- data.Bytes()
		conn.Write([]byte(reply + "\x00"))
	}()
	c, err := clamd.Parse("unix:" + sock)
	if err != nil {
		t.Fatal(err)
	}
	return c, got
}

func TestScanFraming(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789"), 20000) // 200 kB: several chunks
	c, got := fakeClamd(t, "stream: OK")
	res, err := c.Scan(context.Background(), bytes.NewReader(content))
	if err != nil || res.Infected {
		t.Fatalf("scan: %+v %v", res, err)
	}
	if b := <-got; !bytes.Equal(b, content) {
		t.Fatalf("clamd received %d bytes (%.40q), want %d", len(b), b, len(content))
	}
}

func TestScanReplies(t *testing.T) {
	c, _ := fakeClamd(t, "stream: Some.Virus-1 FOUND")
	res, err := c.Scan(context.Background(), strings.NewReader("x"))
	if err != nil || !res.Infected || res.Signature != "Some.Virus-1" {
		t.Fatalf("FOUND: %+v %v", res, err)
	}
	for _, reply := range []string{"INSTREAM size limit exceeded. ERROR", "stream: Can't allocate memory ERROR", "", "gibberish"} {
		c, _ := fakeClamd(t, reply)
		if _, err := c.Scan(context.Background(), strings.NewReader("x")); !errors.Is(err, clamd.ErrUnavailable) {
			t.Errorf("reply %q: err %v, want ErrUnavailable", reply, err)
		}
	}
	// Nobody listening.
	c, _ = clamd.Parse("unix:" + filepath.Join(t.TempDir(), "none.sock"))
	if _, err := c.Scan(context.Background(), strings.NewReader("x")); !errors.Is(err, clamd.ErrUnavailable) {
		t.Fatalf("no clamd: %v", err)
	}
	if err := c.Ping(context.Background()); !errors.Is(err, clamd.ErrUnavailable) {
		t.Fatalf("ping no clamd: %v", err)
	}
}

// TestRealClamd scans with a real clamd (see clamdtest).
func TestRealClamd(t *testing.T) {
	d := clamdtest.Start(t)
	for _, addr := range []string{d.TCP, d.Unix} {
		c, err := clamd.Parse(addr)
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Scan(context.Background(), bytes.NewReader(clamdtest.EICAR()))
		if err != nil || !res.Infected || res.Signature != clamdtest.Signature {
			t.Fatalf("%s EICAR: %+v %v", addr, res, err)
		}
		// Embedded in a larger file, across chunk boundaries.
		big := append(bytes.Repeat([]byte{'a'}, 64<<10-10), clamdtest.EICAR()...)
		big = append(big, bytes.Repeat([]byte{'b'}, 100<<10)...)
		if res, err := c.Scan(context.Background(), bytes.NewReader(big)); err != nil || !res.Infected {
			t.Fatalf("%s embedded EICAR: %+v %v", addr, res, err)
		}
		res, err = c.Scan(context.Background(), strings.NewReader("a perfectly clean file"))
		if err != nil || res.Infected {
			t.Fatalf("%s clean: %+v %v", addr, res, err)
		}
		if res, err := c.Scan(context.Background(), strings.NewReader("")); err != nil || res.Infected {
			t.Fatalf("%s empty: %+v %v", addr, res, err)
		}
	}
}
