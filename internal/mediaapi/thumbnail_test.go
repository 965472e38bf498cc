package mediaapi_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"runtime"
	"testing"

	"conclave/internal/homeserver/hstest"

	xwebp "golang.org/x/image/webp"
)

func thumbPath(id string, w, h int, method string) string {
	p := fmt.Sprintf("/_matrix/client/v1/media/thumbnail/localhost/%s?width=%d&height=%d", id, w, h)
	if method != "" {
		p += "&method=" + method
	}
	return p
}

// getThumb fetches a thumbnail and decodes it.
func getThumb(t *testing.T, s *hstest.Server, token, path string) (image.Image, string) {
	t.Helper()
	r := do(t, s, "GET", path, token, nil)
	if r.Status != 200 {
		t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	ct := r.Header.Get("Content-Type")
	var img image.Image
	var err error
	switch ct {
	case "image/jpeg":
		img, err = jpeg.Decode(bytes.NewReader(r.Body))
	case "image/png":
		img, err = png.Decode(bytes.NewReader(r.Body))
	case "image/webp":
		img, err = xwebp.Decode(bytes.NewReader(r.Body))
	default:
		t.Fatalf("thumbnail type %q", ct)
	}
	if err != nil {
		t.Fatalf("thumbnail does not decode: %v", err)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" || r.Header.Get("Cross-Origin-Resource-Policy") != "cross-origin" {
		t.Fatalf("thumbnail headers: %v", r.Header)
	}
	return img, ct
}

func TestThumbnails(t *testing.T) {
	s := hstest.Start(t)
	alice := s.CreateUser(t, "alice")
	webp, err := os.ReadFile("testdata/gradient-120x80.webp")
	if err != nil {
		t.Fatal(err)
	}
	webpLossless, err := os.ReadFile("testdata/gradient-120x80-lossless.webp")
	if err != nil {
		t.Fatal(err)
	}
	// tw: request w×h with method; expect a dx×dy image.
	type tw struct {
		w, h   int
		method string
		dx, dy int
	}
	cases := []struct {
		name, ct string
		data     []byte
		outType  string
		wants    []tw
	}{
		{"jpeg 1000x500", "image/jpeg", jpegBytes(t, 1000, 500), "image/jpeg", []tw{
			{32, 32, "crop", 32, 32},
			{20, 20, "crop", 32, 32}, // smallest size at least as large
			{96, 96, "crop", 96, 96}, // 96x96 crop
			{300, 200, "", 320, 160}, // 320x240 scale box, aspect kept
			{320, 240, "scale", 320, 160},
			{600, 400, "scale", 640, 320},
			{800, 600, "scale", 800, 400},
			{2000, 2000, "scale", 800, 400}, // nothing larger: the largest
			{200, 200, "crop", 320, 160},    // no crop size that large: scale
		}},
		{"png 300x300", "image/png", pngBytes(t, 300, 300), "image/png", []tw{
			{32, 32, "crop", 32, 32},
			{320, 240, "scale", 240, 240},
			{800, 600, "scale", 300, 300}, // never upscaled
		}},
		{"gif 200x100 animated", "image/gif", gifBytes(t, 200, 100), "image/png", []tw{
			{96, 96, "crop", 96, 96},
			{640, 480, "scale", 200, 100},
		}},
		{"webp lossy 120x80", "image/webp", webp, "image/png", []tw{
			{32, 32, "crop", 32, 32},
			{96, 96, "crop", 80, 80}, // crop region smaller than the box: kept, not upscaled
			{320, 240, "scale", 120, 80},
		}},
		{"webp lossless 120x80", "image/webp", webpLossless, "image/png", []tw{
			{32, 32, "crop", 32, 32},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := mustUpload(t, s, alice.Token, c.ct, "img", c.data)
			src, _, err := image.DecodeConfig(bytes.NewReader(c.data))
			if err != nil && c.ct != "image/webp" {
				t.Fatal(err)
			}
			if c.ct == "image/webp" {
				src, _ = xwebp.DecodeConfig(bytes.NewReader(c.data))
			}
			for _, w := range c.wants {
				p := thumbPath(id, w.w, w.h, w.method)
				if r := do(t, s, "GET", p, alice.Token, nil); len(r.Body) > len(c.data) {
					t.Errorf("%dx%d %s: thumbnail of %d bytes for a source of %d", w.w, w.h, w.method, len(r.Body), len(c.data))
				} else if bytes.Equal(r.Body, c.data) {
					// The source is smaller than any thumbnail of it.
					if r.Header.Get("Content-Type") != c.ct || w.dx > src.Width || w.dy > src.Height {
						t.Errorf("%dx%d %s: the source (%s) served for a %dx%d thumbnail", w.w, w.h, w.method, r.Header.Get("Content-Type"), w.dx, w.dy)
					}
					continue
				}
				img, ct := getThumb(t, s, alice.Token, p)
				if ct != c.outType {
					t.Errorf("%dx%d %s: type %s, want %s", w.w, w.h, w.method, ct, c.outType)
				}
				if b := img.Bounds(); b.Dx() != w.dx || b.Dy() != w.dy {
					t.Errorf("%dx%d %s: got %dx%d, want %dx%d", w.w, w.h, w.method, b.Dx(), b.Dy(), w.dx, w.dy)
				}
			}
		})
	}

	t.Run("never larger than the source", func(t *testing.T) {
		// A 640x480 PNG of flat colour areas compresses to a few KB; its
		// resampled 96x96 crop, with gradients at every edge, need not.
		img := image.NewRGBA(image.Rect(0, 0, 640, 480))
		for y := 0; y < 480; y++ {
			for x := 0; x < 640; x++ {
				img.Set(x, y, color.RGBA{uint8(x / 40 * 16), uint8(y / 30 * 16), uint8((x/40 + y/30) * 8), 255})
			}
		}
		var b bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		id := mustUpload(t, s, alice.Token, "image/png", "", b.Bytes())
		for _, w := range []struct {
			w, h   int
			method string
		}{{96, 96, "crop"}, {32, 32, "crop"}, {320, 240, "scale"}, {640, 480, "scale"}} {
			r := do(t, s, "GET", thumbPath(id, w.w, w.h, w.method), alice.Token, nil)
			if r.Status != 200 || len(r.Body) > b.Len() {
				t.Errorf("%dx%d %s: %d, %d bytes for a source of %d", w.w, w.h, w.method, r.Status, len(r.Body), b.Len())
			}
			if _, _, err := image.Decode(bytes.NewReader(r.Body)); err != nil {
				t.Errorf("%dx%d %s: %v", w.w, w.h, w.method, err)
			}
		}
	})

	t.Run("content is preserved", func(t *testing.T) {
		// The WebP gradient's colours survive: top-left dark, bottom-right
		// red+green, blue about 128 everywhere.
		id := mustUpload(t, s, alice.Token, "image/webp", "", webpLossless)
		img, _ := getThumb(t, s, alice.Token, thumbPath(id, 320, 240, "scale"))
		r, g, b, _ := img.At(119, 79).RGBA()
		if r>>8 < 200 || g>>8 < 200 || b>>8 < 110 || b>>8 > 145 {
			t.Errorf("bottom-right pixel %d,%d,%d", r>>8, g>>8, b>>8)
		}
		// The GIF's first frame (red) is used.
		id = mustUpload(t, s, alice.Token, "image/gif", "", gifBytes(t, 50, 50))
		img, _ = getThumb(t, s, alice.Token, thumbPath(id, 32, 32, "crop")+"&animated=true")
		if r, g, b, _ := img.At(16, 16).RGBA(); r>>8 < 250 || g>>8 > 5 || b>>8 > 5 {
			t.Errorf("GIF thumbnail is not the first frame: %d,%d,%d", r>>8, g>>8, b>>8)
		}
	})

	t.Run("cached", func(t *testing.T) {
		id := mustUpload(t, s, alice.Token, "image/png", "", pngBytes(t, 400, 300))
		before := len(contentFiles(t, s))
		first := do(t, s, "GET", thumbPath(id, 640, 480, "scale"), alice.Token, nil)
		if len(contentFiles(t, s)) != before+1 {
			t.Fatal("thumbnail not stored")
		}
		// Requests that map to the same size reuse it: no new file, same bytes.
		for _, p := range []string{thumbPath(id, 640, 480, "scale"), thumbPath(id, 500, 400, "scale"), thumbPath(id, 321, 241, "")} {
			r := do(t, s, "GET", p, alice.Token, nil)
			if !bytes.Equal(r.Body, first.Body) || r.Header.Get("ETag") != first.Header.Get("ETag") {
				t.Fatalf("%s: not the cached thumbnail", p)
			}
		}
		if len(contentFiles(t, s)) != before+1 {
			t.Fatal("cached thumbnail regenerated")
		}
	})

	t.Run("errors", func(t *testing.T) {
		txt := mustUpload(t, s, alice.Token, "text/plain", "", []byte("not an image"))
		wantErr(t, do(t, s, "GET", thumbPath(txt, 32, 32, "crop"), alice.Token, nil), 400, "M_UNKNOWN")
		svg := mustUpload(t, s, alice.Token, "image/svg+xml", "", []byte("<svg/>"))
		wantErr(t, do(t, s, "GET", thumbPath(svg, 32, 32, "crop"), alice.Token, nil), 400, "M_UNKNOWN")
		for _, bad := range [][]byte{[]byte("garbage"), nil, pngBytes(t, 10, 10)[:40], jpegBytes(t, 50, 50)[:200]} {
			id := mustUpload(t, s, alice.Token, "image/png", "", bad)
			wantErr(t, do(t, s, "GET", thumbPath(id, 32, 32, "crop"), alice.Token, nil), 400, "M_UNKNOWN")
		}
		// A JPEG labelled PNG does not decode as PNG.
		id := mustUpload(t, s, alice.Token, "image/png", "", jpegBytes(t, 50, 50))
		wantErr(t, do(t, s, "GET", thumbPath(id, 32, 32, "crop"), alice.Token, nil), 400, "M_UNKNOWN")

		ok := mustUpload(t, s, alice.Token, "image/png", "", pngBytes(t, 10, 10))
		base := "/_matrix/client/v1/media/thumbnail/localhost/" + ok
		wantErr(t, do(t, s, "GET", base+"?height=32", alice.Token, nil), 400, "M_MISSING_PARAM")
		wantErr(t, do(t, s, "GET", base+"?width=32", alice.Token, nil), 400, "M_MISSING_PARAM")
		wantErr(t, do(t, s, "GET", base+"?width=abc&height=32", alice.Token, nil), 400, "M_INVALID_PARAM")
		wantErr(t, do(t, s, "GET", base+"?width=-5&height=32", alice.Token, nil), 400, "M_INVALID_PARAM")
		wantErr(t, do(t, s, "GET", base+"?width=0&height=32", alice.Token, nil), 400, "M_INVALID_PARAM")
		wantErr(t, do(t, s, "GET", base+"?width=32&height=32&method=zoom", alice.Token, nil), 400, "M_INVALID_PARAM")
		wantErr(t, do(t, s, "GET", base+"?width=32&height=32&animated=yes", alice.Token, nil), 400, "M_INVALID_PARAM")
		wantErr(t, do(t, s, "GET", thumbPath("unknownID", 32, 32, ""), alice.Token, nil), 404, "M_NOT_FOUND")
	})

	t.Run("decompression bomb", func(t *testing.T) {
		// The header claims 100000x100000 RGBA (40 GB decoded): refused from
		// the header alone, before any pixel buffer is allocated.
		id := mustUpload(t, s, alice.Token, "image/png", "bomb.png", pngHeaderOnly(100000, 100000))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r := do(t, s, "GET", thumbPath(id, 32, 32, "crop"), alice.Token, nil)
		runtime.ReadMemStats(&after)
		wantErr(t, r, 413, "M_TOO_LARGE")
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Fatalf("refusing the bomb allocated %d bytes", grew)
		}
		// Just over the configured budget is refused too; the download
		// itself still works.
		id = mustUpload(t, s, alice.Token, "image/png", "", pngHeaderOnly(8000, 4001))
		wantErr(t, do(t, s, "GET", thumbPath(id, 32, 32, "crop"), alice.Token, nil), 413, "M_TOO_LARGE")
		if r := do(t, s, "GET", dl(id), alice.Token, nil); r.Status != 200 {
			t.Fatalf("download of a large image: %d", r.Status)
		}
	})
}
