package federation

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"

	"conclave/internal/event"
	"conclave/internal/room"
	"conclave/internal/store/sqlite"
)

// FuzzTransaction: any /send body from an authenticated origin gets a JSON
// answer or a Matrix error, never a panic, and never more entries than PDUs.
func FuzzTransaction(f *testing.F) {
	db, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "fuzz.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	key, _ := event.GenerateSigningKey()
	rooms := room.New(db, "us.example", key)
	roomID, err := rooms.CreateRoom(context.Background(), &room.CreateRequest{Creator: "@a:us.example", Preset: "public_chat"})
	if err != nil {
		f.Fatal(err)
	}
	s := &Service{ServerName: "us.example", Rooms: rooms, Log: slog.New(slog.DiscardHandler)}
	f.Add([]byte(`{"origin":"them.example","origin_server_ts":1,"pdus":[],"edus":[]}`))
	f.Add([]byte(`{"pdus":[{"room_id":"!nope:x"},{"room_id":"` + roomID + `","type":"m.room.message"}],"edus":[{"edu_type":"m.typing","content":{}}]}`))
	f.Add([]byte(`{"pdus":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		answer, err := s.Transaction(context.Background(), "them.example", string(body), body, nil)
		if err != nil {
			return
		}
		var out struct {
			PDUs map[string]json.RawMessage `json:"pdus"`
		}
		if json.Unmarshal(answer, &out) != nil {
			t.Fatalf("answer is not JSON: %s", answer)
		}
		if len(out.PDUs) > MaxTxnPDUs {
			t.Fatalf("%d answers", len(out.PDUs))
		}
	})
}
