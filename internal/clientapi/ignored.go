package clientapi

import (
	"context"

	"conclave/internal/store"
)

// dropIgnored removes the non-state events of users userID ignores (spec
// "Ignoring Users": the server must not send their events to the client;
// like Synapse, state events stay so room state remains coherent).
func (a *API) dropIgnored(ctx context.Context, userID string, evs []store.StoredEvent) ([]store.StoredEvent, error) {
	ignored, err := a.AccountData.IgnoredUsers(ctx, userID)
	if err != nil || len(ignored) == 0 {
		return evs, err
	}
	kept := evs[:0:0]
	for i := range evs {
		if evs[i].StateKey != nil || !ignored[evs[i].Sender] {
			kept = append(kept, evs[i])
		}
	}
	return kept, nil
}
