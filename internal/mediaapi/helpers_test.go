package mediaapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"conclave/internal/accounts"
	"conclave/internal/homeserver/hstest"
	"conclave/internal/store"
)

// resp is a raw HTTP answer.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

func (r *resp) str(k string) string { s, _ := r.JSON[k].(string); return s }
func (r *resp) errcode() string     { return r.str("errcode") }

// do sends a request with a raw body and headers.
func do(t testing.TB, s *hstest.Server, method, path, token string, body io.Reader, hdr ...string) *resp {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if b, ok := body.(*bytes.Reader); ok && b != nil {
		req.ContentLength = int64(b.Len())
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	out := &resp{Status: res.StatusCode, Header: res.Header, Body: data}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		_ = json.Unmarshal(data, &out.JSON)
	}
	return out
}

// upload posts content and returns the answer.
func upload(t testing.TB, s *hstest.Server, token, contentType, filename string, data []byte) *resp {
	t.Helper()
	path := "/_matrix/media/v3/upload"
	if filename != "" {
		path += "?filename=" + urlQueryEscape(filename)
	}
	hdr := []string{}
	if contentType != "" {
		hdr = append(hdr, "Content-Type", contentType)
	}
	return do(t, s, "POST", path, token, bytes.NewReader(data), hdr...)
}

// mustUpload uploads and returns the media ID.
func mustUpload(t testing.TB, s *hstest.Server, token, contentType, filename string, data []byte) string {
	t.Helper()
	r := upload(t, s, token, contentType, filename, data)
	if r.Status != 200 {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	uri := r.str("content_uri")
	prefix := "mxc://" + s.Config.ServerName + "/"
	if !strings.HasPrefix(uri, prefix) {
		t.Fatalf("content_uri %q does not start with %q", uri, prefix)
	}
	return strings.TrimPrefix(uri, prefix)
}

func dl(id string) string { return "/_matrix/client/v1/media/download/localhost/" + id }
func legacyDL(id string) string {
	return "/_matrix/media/v3/download/localhost/" + id
}

// adminUser makes a server admin straight in the store.
func adminUser(t testing.TB, s *hstest.Server, localpart string) *hstest.User {
	t.Helper()
	ctx := context.Background()
	userID := "@" + localpart + ":" + s.Config.ServerName
	now := time.Now().UnixMilli()
	if err := s.HS.Store.CreateUser(ctx, &store.User{UserID: userID, IsAdmin: true, CreatedTS: now}); err != nil {
		t.Fatal(err)
	}
	u := &hstest.User{UserID: userID, DeviceID: "ADMIN", Token: accounts.NewToken("syt_")}
	if err := s.HS.Store.CreateDevice(ctx, &store.Device{UserID: userID, DeviceID: u.DeviceID, CreatedTS: now}, store.NewToken{AccessHash: accounts.HashToken(u.Token)}); err != nil {
		t.Fatal(err)
	}
	return u
}

// contentFiles lists the stored content files (hash names) of a server.
func contentFiles(t testing.TB, s *hstest.Server) []string {
	t.Helper()
	var out []string
	root := filepath.Join(s.Config.MediaPath(), "content")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, d.Name())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tmpFiles lists the staging files of a server (in the per-process staging
// directories; their lock files are not staging files).
func tmpFiles(t testing.TB, s *hstest.Server) []string {
	t.Helper()
	var out []string
	root := filepath.Join(s.Config.MediaPath(), "staging")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Dir(p) != root {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantErr(t testing.TB, r *resp, status int, code string) {
	t.Helper()
	if r.Status != status || r.errcode() != code {
		t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Body)
	}
}

// Generated test images.

func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), 100, 255})
		}
	}
	return img
}

func jpegBytes(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, testImage(w, h), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pngBytes(t testing.TB, w, h int) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, testImage(w, h)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// gifBytes is a two-frame animation: red, then blue.
func gifBytes(t testing.TB, w, h int) []byte {
	pal := color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 0, 255, 255}}
	a := &gif.GIF{}
	for i := 0; i < 2; i++ {
		f := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for p := range f.Pix {
			f.Pix[p] = uint8(i)
		}
		a.Image = append(a.Image, f)
		a.Delay = append(a.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, a); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngHeaderOnly is a PNG signature and IHDR chunk claiming w×h RGBA pixels,
// followed by no image data: a decompression bomb's header.
func pngHeaderOnly(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := []byte{0, 0, 0, 13, 'I', 'H', 'D', 'R',
		byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w),
		byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h),
		8, 6, 0, 0, 0}
	b.Write(ihdr)
	b.Write(crc32IEEE(ihdr[4:]))
	return b.Bytes()
}

func crc32IEEE(b []byte) []byte {
	c := crc32.ChecksumIEEE(b)
	return []byte{byte(c >> 24), byte(c >> 16), byte(c >> 8), byte(c)}
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
