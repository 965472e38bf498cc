package homeserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"conclave/internal/event"
)

// loadOrCreateSigningKey reads the server's ed25519 signing key, creating it
// (mode 0600, written atomically) on first start. The file uses Synapse's
// format, so keys can move between servers.
func loadOrCreateSigningKey(path string) (*event.SigningKey, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		k, err := event.ParseSigningKey(data)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := event.GenerateSigningKey()
	if err != nil {
		return nil, err
	}
	text, err := k.MarshalText()
	if err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(append(text, '\n')); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return nil, err
	}
	return k, nil
}
