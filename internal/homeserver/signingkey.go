package homeserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"conclave/internal/config"

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
	if err := writeSigningKey(path, k); err != nil {
		return nil, err
	}
	return k, nil
}

// writeSigningKey writes k to path atomically (mode 0600).
func writeSigningKey(path string, k *event.SigningKey) error {
	text, err := k.MarshalText()
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(text, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, path)
}

// RotateSigningKey replaces the server's signing key by a new one, for
// `conclave admin rotate-key`. The old key is kept as one of this server's
// old keys (expired now): /_matrix/key/v2/server lists it in
// old_verify_keys and the keyring goes on verifying the events it signed.
// The store is opened as the server would open it: a SQLite database is
// locked by a running server (stop it first); on PostgreSQL the shared key
// is replaced and the old one recorded in one transaction, and every
// running process must be restarted (they sign with the key they loaded).
// The data directory's signing.key is rewritten last, so on SQLite a crash
// in between leaves the old key in use, merely listed as old too (it is
// then not published as old while it is current).
func RotateSigningKey(ctx context.Context, cfg config.Config) (old, fresh *event.SigningKey, err error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data dir: %w", err)
	}
	db, err := openStore(ctx, &cfg)
	if err != nil {
		return nil, nil, err
	}
	defer db.Close()
	path := filepath.Join(cfg.DataDir, "signing.key")
	if old, err = loadSigningKey(ctx, db, path); err != nil {
		return nil, nil, err
	}
	if fresh, err = event.GenerateSigningKey(); err != nil {
		return nil, nil, err
	}
	now := time.Now().UnixMilli()
	retired := store.ServerKey{ServerName: cfg.ServerName, KeyID: old.ID, PublicKey: old.PublicKeyBase64(), ExpiredTS: now, FetchedTS: now}
	if cl, ok := db.(store.Cluster); ok {
		rot, ok := db.(store.SigningKeyRotator)
		if !ok {
			return nil, nil, errors.New("this store cannot rotate its shared signing key")
		}
		// loadSigningKey made sure a key is stored: this returns it.
		stored, err := cl.SharedSigningKey(ctx, nil)
		if err != nil {
			return nil, nil, err
		}
		text, err := fresh.MarshalText()
		if err != nil {
			return nil, nil, err
		}
		if err := rot.RotateSharedSigningKey(ctx, stored, bytes.TrimSpace(text), retired); err != nil {
			return nil, nil, fmt.Errorf("signing key in the database: %w", err)
		}
	} else if err := db.StoreServerKeys(ctx, cfg.ServerName, []store.ServerKey{retired}, nil); err != nil {
		return nil, nil, err
	}
	if err := writeSigningKey(path, fresh); err != nil {
		return nil, nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return old, fresh, nil
}
