package storetest

import (
	"testing"

	"conclave/internal/store"
)

func testMedia(t *testing.T, s store.Store) {
	m := &store.Media{MediaID: "m1", UserID: "@a:x", ContentType: "image/png", Filename: "a.png", Size: 10, SHA256: "h1", CreatedTS: 5, UploadedTS: 5, ScanStatus: store.ScanClean}
	must(t, s.CreateMedia(ctx(), m))
	wantErr(t, s.CreateMedia(ctx(), m), store.ErrConflict)
	got, err := s.GetMedia(ctx(), "m1")
	must(t, err)
	if *got != *m {
		t.Fatalf("media %+v, want %+v", got, m)
	}
	_, err = s.GetMedia(ctx(), "nope")
	wantErr(t, err, store.ErrNotFound)

	// Async uploads: a row without content, completed once.
	must(t, s.CreateMedia(ctx(), &store.Media{MediaID: "m2", UserID: "@a:x", CreatedTS: 100}))
	must(t, s.CreateMedia(ctx(), &store.Media{MediaID: "m3", UserID: "@a:x", CreatedTS: 50}))
	if n, err := s.CountPendingMedia(ctx(), "@a:x", 60); err != nil || n != 1 {
		t.Fatalf("pending %d %v", n, err)
	}
	got, _ = s.GetMedia(ctx(), "m2")
	if got.SHA256 != "" || got.UploadedTS != 0 {
		t.Fatalf("pending media %+v", got)
	}
	done := &store.Media{MediaID: "m2", ContentType: "text/plain", Filename: "b", Size: 3, SHA256: "h2", UploadedTS: 101, Restricted: true}
	must(t, s.CompleteMedia(ctx(), done))
	wantErr(t, s.CompleteMedia(ctx(), done), store.ErrConflict)
	wantErr(t, s.CompleteMedia(ctx(), &store.Media{MediaID: "nope", SHA256: "h"}), store.ErrNotFound)
	got, _ = s.GetMedia(ctx(), "m2")
	if got.SHA256 != "h2" || got.Size != 3 || !got.Restricted || got.UserID != "@a:x" || got.CreatedTS != 100 {
		t.Fatalf("completed %+v", got)
	}
	if n, _ := s.CountPendingMedia(ctx(), "@a:x", 0); n != 1 {
		t.Fatalf("pending after completion %d", n)
	}

	must(t, s.SetMediaQuarantined(ctx(), "m1", true))
	wantErr(t, s.SetMediaQuarantined(ctx(), "nope", true), store.ErrNotFound)
	got, _ = s.GetMedia(ctx(), "m1")
	if !got.Quarantined {
		t.Fatal("not quarantined")
	}

	th := func(w, h int, method, sha string) *store.Thumbnail {
		return &store.Thumbnail{MediaID: "m1", Width: w, Height: h, Method: method, ActualWidth: w, ActualHeight: h / 2, ContentType: "image/png", Size: 1, SHA256: sha}
	}
	must(t, s.PutThumbnail(ctx(), th(96, 96, "scale", "t1")))
	must(t, s.PutThumbnail(ctx(), th(32, 32, "crop", "t2")))
	must(t, s.PutThumbnail(ctx(), th(96, 96, "scale", "t3"))) // replaces
	bad := th(1, 1, "crop", "t4")
	bad.MediaID = "nope"
	wantErr(t, s.PutThumbnail(ctx(), bad), store.ErrNotFound)
	ths, err := s.GetThumbnails(ctx(), "m1")
	must(t, err)
	if len(ths) != 2 || ths[0].Width != 32 || ths[1].SHA256 != "t3" || ths[1].ActualHeight != 48 {
		t.Fatalf("thumbnails %+v", ths)
	}
	ref, err := s.ReferencedHashes(ctx(), []string{"h1", "h2", "t1", "t3", "zz"})
	must(t, err)
	equal(t, "referenced", ref, map[string]bool{"h1": true, "h2": true, "t3": true})
	hashes, err := s.DeleteMedia(ctx(), "m1")
	must(t, err)
	equal(t, "hashes", sorted(hashes), []string{"h1", "t2", "t3"})
	_, err = s.DeleteMedia(ctx(), "m1")
	wantErr(t, err, store.ErrNotFound)
	if ths, _ := s.GetThumbnails(ctx(), "m1"); len(ths) != 0 {
		t.Fatalf("thumbnails left: %+v", ths)
	}
	// The pending row has no hash to report.
	hashes, _ = s.DeleteMedia(ctx(), "m3")
	equal(t, "no hashes", len(hashes), 0)

	_, err = s.GetScanResult(ctx(), "h1")
	wantErr(t, err, store.ErrNotFound)
	must(t, s.PutScanResult(ctx(), &store.ScanResult{SHA256: "h1", Status: store.ScanInfected, Signature: "Eicar", ScannedTS: 9}))
	must(t, s.PutScanResult(ctx(), &store.ScanResult{SHA256: "h1", Status: store.ScanClean, ScannedTS: 10}))
	sr, err := s.GetScanResult(ctx(), "h1")
	must(t, err)
	if sr.Status != store.ScanClean || sr.Signature != "" || sr.ScannedTS != 10 {
		t.Fatalf("scan %+v", sr)
	}
}

// testRemoteMedia: cached remote media are rows of their own, found by
// origin and remote media ID, one per pair.
func testRemoteMedia(t *testing.T, s store.Store) {
	r := &store.Media{MediaID: "loc1", ContentType: "image/png", Size: 4, SHA256: "rh", CreatedTS: 7, UploadedTS: 7, Restricted: true, Origin: "other.example:8448", RemoteID: "abc"}
	must(t, s.CreateMedia(ctx(), r))
	got, err := s.GetRemoteMedia(ctx(), "other.example:8448", "abc")
	must(t, err)
	if *got != *r {
		t.Fatalf("remote media %+v, want %+v", got, r)
	}
	if got, err := s.GetMedia(ctx(), "loc1"); err != nil || got.Origin != r.Origin || got.RemoteID != "abc" {
		t.Fatalf("by local ID: %+v %v", got, err)
	}
	_, err = s.GetRemoteMedia(ctx(), "other.example:8448", "abd")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetRemoteMedia(ctx(), "", "loc1")
	wantErr(t, err, store.ErrNotFound)
	// Another process caching the same media meanwhile: one row wins.
	wantErr(t, s.CreateMedia(ctx(), &store.Media{MediaID: "loc2", CreatedTS: 8, Origin: "other.example:8448", RemoteID: "abc"}), store.ErrConflict)
	// The same remote ID from another server is another media.
	must(t, s.CreateMedia(ctx(), &store.Media{MediaID: "loc3", CreatedTS: 8, Quarantined: true, Origin: "third.example", RemoteID: "abc"}))
	// A quarantined placeholder gets its content later.
	must(t, s.CompleteMedia(ctx(), &store.Media{MediaID: "loc3", ContentType: "text/plain", Size: 1, SHA256: "rh2", UploadedTS: 9, Restricted: true}))
	got, err = s.GetRemoteMedia(ctx(), "third.example", "abc")
	must(t, err)
	if got.SHA256 != "rh2" || !got.Quarantined || got.MediaID != "loc3" {
		t.Fatalf("completed placeholder %+v", got)
	}
	// Local media with the same ID as a remote one's are not remote.
	must(t, s.CreateMedia(ctx(), &store.Media{MediaID: "abc", UserID: "@a:x", CreatedTS: 1}))
	if got, _ := s.GetRemoteMedia(ctx(), "other.example:8448", "abc"); got.MediaID != "loc1" {
		t.Fatalf("remote lookup found %+v", got)
	}
}
