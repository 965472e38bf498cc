package federationapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"conclave/internal/event"
	"conclave/internal/keyring"
	"conclave/internal/server"
	"conclave/internal/store/sqlite"
)

// BenchmarkSignedRequest: the cost of authenticating a /send with a 10 KB
// body whose origin's key is in memory.
func BenchmarkSignedRequest(b *testing.B) {
	db, err := sqlite.Open(b.Context(), b.TempDir()+"/c.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key, _ := event.GenerateSigningKey()
	k, err := keyring.New(b.Context(), keyring.Config{ServerName: "hs1", Key: key, Store: db})
	if err != nil {
		b.Fatal(err)
	}
	api := New(Deps{ServerName: "hs1", SigningKey: key, Keyring: k, Now: time.Now})
	mux := server.NewMux()
	api.HandleSigned(mux, "PUT /_matrix/federation/v1/send/{txnId}", func(w http.ResponseWriter, r *http.Request) {})
	body := []byte(fmt.Sprintf(`{"origin":"hs1","pdus":[],"edus":[{"edu_type":"m.typing","content":{"x":%q}}]}`, bytes.Repeat([]byte("a"), 10_000)))
	uri := "/_matrix/federation/v1/send/1"
	obj, _ := json.Marshal(map[string]any{"method": "PUT", "uri": uri, "origin": "hs1", "destination": "hs1", "content": json.RawMessage(body)})
	signed, _ := event.SignJSON(obj, "hs1", key)
	var s struct{ Signatures map[string]map[string]string }
	json.Unmarshal(signed, &s)
	h := fmt.Sprintf(`X-Matrix origin="hs1",destination="hs1",key="%s",sig="%s"`, key.ID, s.Signatures["hs1"][key.ID])
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("PUT", uri, bytes.NewReader(body))
		req.Header.Set("Authorization", h)
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body)
		}
	}
}
