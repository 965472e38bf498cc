package homeserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"conclave/internal/event"
	"conclave/internal/store"
)

// loadSigningKey returns the server's signing key. On a database several
// processes may share (PostgreSQL) the key lives in the database, so every
// process signs with the same key: the first process stores it (importing
// the data directory's signing.key if there is one, else a fresh key) and
// the others read it. Otherwise it is the data directory's file.
func loadSigningKey(ctx context.Context, db store.Store, path string) (*event.SigningKey, error) {
	cl, ok := db.(store.Cluster)
	if !ok {
		return loadOrCreateSigningKey(path)
	}
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		k, err := event.GenerateSigningKey()
		if err != nil {
			return nil, err
		}
		if text, err = k.MarshalText(); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	} else if _, err := event.ParseSigningKey(text); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	stored, err := cl.SharedSigningKey(ctx, bytes.TrimSpace(text))
	if err != nil {
		return nil, fmt.Errorf("signing key in the database: %w", err)
	}
	k, err := event.ParseSigningKey(stored)
	if err != nil {
		return nil, fmt.Errorf("signing key in the database: %w", err)
	}
	return k, nil
}

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
