package media

import (
	"bytes"
	"image"
	"image/jpeg"
	"strings"
	"sync"
	"testing"
	"time"

	xdraw "golang.org/x/image/draw"
)

func TestValidMediaID(t *testing.T) {
	for _, ok := range []string{"a", "AbC_-09", strings.Repeat("x", 255), newMediaID()} {
		if !ValidMediaID(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "..", "a/b", "a.b", "a b", "é", "a\x00", "%2F", strings.Repeat("x", 256)} {
		if ValidMediaID(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSelectSize(t *testing.T) {
	cases := []struct {
		w, h   int
		method string
		want   Size
	}{
		{1, 1, "crop", Size{32, 32, "crop"}},
		{32, 32, "crop", Size{32, 32, "crop"}},
		{33, 10, "crop", Size{96, 96, "crop"}},
		{97, 97, "crop", Size{320, 240, "scale"}},
		{1, 1, "scale", Size{320, 240, "scale"}},
		{320, 241, "scale", Size{640, 480, "scale"}},
		{801, 1, "scale", Size{800, 600, "scale"}},
		{5000, 5000, "crop", Size{800, 600, "scale"}},
	}
	for _, c := range cases {
		if got := SelectSize(c.w, c.h, c.method); got != c.want {
			t.Errorf("SelectSize(%d, %d, %s) = %v, want %v", c.w, c.h, c.method, got, c.want)
		}
	}
}

func TestResizeDimensions(t *testing.T) {
	cases := []struct {
		sw, sh int
		size   Size
		dw, dh int
	}{
		{1000, 500, Size{320, 240, "scale"}, 320, 160},
		{500, 1000, Size{320, 240, "scale"}, 120, 240},
		{100, 50, Size{320, 240, "scale"}, 100, 50}, // never upscaled
		{1000, 500, Size{96, 96, "crop"}, 96, 96},
		{50, 20, Size{96, 96, "crop"}, 20, 20},
		{3, 1000, Size{32, 32, "crop"}, 3, 3},
		{1, 1, Size{32, 32, "crop"}, 1, 1},
		{4000, 1, Size{800, 600, "scale"}, 800, 1},
	}
	for _, c := range cases {
		out := Resize(image.NewRGBA(image.Rect(0, 0, c.sw, c.sh)), c.size)
		if b := out.Bounds(); b.Dx() != c.dw || b.Dy() != c.dh {
			t.Errorf("%dx%d to %v: %dx%d, want %dx%d", c.sw, c.sh, c.size, b.Dx(), b.Dy(), c.dw, c.dh)
		}
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimiter(1, 3)
	l.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if ok, _ := l.take("a"); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := l.take("a")
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("over burst: ok=%v wait=%v", ok, wait)
	}
	if ok, _ := l.take("b"); !ok {
		t.Fatal("limits are per key")
	}
	now = now.Add(time.Second)
	if ok, _ := l.take("a"); !ok {
		t.Fatal("token not refilled")
	}
}

func TestInflightDedup(t *testing.T) {
	var f inflight
	var mu sync.Mutex
	runs := 0
	release := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.do("k", func() error {
			close(started)
			<-release
			mu.Lock()
			runs++
			mu.Unlock()
			return nil
		})
	}()
	<-started
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.do("k", func() error { mu.Lock(); runs++; mu.Unlock(); return nil })
		}()
	}
	close(release)
	wg.Wait()
	// Callers that arrived while the first ran shared its result; any that
	// arrived after it finished ran again. At least one and at most six runs.
	if runs < 1 || runs > 6 {
		t.Fatalf("runs = %d", runs)
	}
}

// photo is a 12-megapixel JPEG with some texture.
func photo(b *testing.B) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4000, 3000))
	for y := 0; y < 3000; y++ {
		for x := 0; x < 4000; x++ {
			img.Pix[img.PixOffset(x, y)+0] = uint8(x ^ y)
			img.Pix[img.PixOffset(x, y)+1] = uint8(x * y >> 8)
			img.Pix[img.PixOffset(x, y)+2] = uint8(y)
			img.Pix[img.PixOffset(x, y)+3] = 255
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkThumbnail12MP: decode a 12 MP JPEG, make the 800x600 thumbnail,
// encode it: the whole cost of a first thumbnail request.
func BenchmarkThumbnail12MP(b *testing.B) {
	data := photo(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src, err := jpeg.Decode(bytes.NewReader(data))
		if err != nil {
			b.Fatal(err)
		}
		out := Resize(src, Size{800, 600, "scale"})
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, out, &jpeg.Options{Quality: 85}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResize compares the scalers on a decoded 12 MP image to 800x600.
func BenchmarkResize(b *testing.B) {
	src, err := jpeg.Decode(bytes.NewReader(photo(b)))
	if err != nil {
		b.Fatal(err)
	}
	r := image.Rect(0, 0, 800, 600)
	for _, c := range []struct {
		name string
		fn   func() image.Image
	}{
		{"CatmullRom", func() image.Image {
			dst := image.NewRGBA(r)
			xdraw.CatmullRom.Scale(dst, r, src, src.Bounds(), xdraw.Src, nil)
			return dst
		}},
		{"ApproxBiLinear", func() image.Image {
			dst := image.NewRGBA(r)
			xdraw.ApproxBiLinear.Scale(dst, r, src, src.Bounds(), xdraw.Src, nil)
			return dst
		}},
		{"HalvingThenCatmullRom", func() image.Image { return Resize(src, Size{800, 600, "scale"}) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.fn()
			}
		})
	}
}
