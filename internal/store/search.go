package store

import "context"

// SearchQuery is a full-text search over room events (spec: "Server Side
// Search"). Events that were redacted are never found.
type SearchQuery struct {
	// Terms are the words to find, all of them, each as a prefix.
	Terms []string
	// Keys are the fields searched: any of content.body, content.name,
	// content.topic (empty: all three).
	Keys []string
	// JoinedBy restricts the search to rooms this user is joined to now.
	JoinedBy string
	// RoomIDs, if not nil, restricts it further to these rooms.
	RoomIDs, NotRoomIDs []string
	Senders, NotSenders []string
	// Types and NotTypes are patterns where "*" matches any run.
	Types, NotTypes []string
	// Recent orders newest first; otherwise by rank, best first.
	Recent bool
	// BeforePos (Recent) only finds events below this position; 0: none.
	BeforePos int64
	// Offset (by rank) skips this many results.
	Offset int
	Limit  int
}

// SearchHit is one found event with its rank (higher is better).
type SearchHit struct {
	Event StoredEvent
	Rank  float64
}

// Search runs full-text searches.
type Search interface {
	// SearchEvents returns one page of hits and the total number of matches.
	SearchEvents(ctx context.Context, q *SearchQuery) (hits []SearchHit, count int, err error)
}
