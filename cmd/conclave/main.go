// Command conclave is the Conclave Matrix homeserver. It only wires: it reads
// the configuration and hands it to internal/homeserver (serve), or talks to
// a running server (admin).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"conclave/internal/adminclient"
	"conclave/internal/config"
	"conclave/internal/homeserver"
	"conclave/internal/migrate"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `usage: conclave <command> [flags]

commands:
  serve             run the homeserver (conclave serve --help for flags)
  admin register    create an account through the shared-secret API
  admin rotate-key  replace the server's signing key; the old one keeps verifying (admin rotate-key --help)
  migrate           copy a stopped server's SQLite database into PostgreSQL (migrate --help)
  version           print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "admin":
		return admin(args[1:], stdout, stderr)
	case "migrate":
		return migrate.Main(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "conclave", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "conclave: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func serve(args []string, stderr io.Writer) int {
	for _, a := range args {
		if a == "--help" || a == "-h" {
			fmt.Fprint(stderr, "usage: conclave serve [flags]\n\n"+config.Usage())
			return 0
		}
	}
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	homeserver.Version = version
	hs, err := homeserver.New(ctx, cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	log.Info("conclave starting", "version", version, "server_name", cfg.ServerName, "data_dir", cfg.DataDir)
	if err := hs.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("serve", "err", err)
		return 1
	}
	log.Info("conclave stopped")
	return 0
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

const adminUsage = "usage: conclave admin register --url URL --secret SECRET --user NAME --password PASSWORD [--admin]\n" +
	"       conclave admin rotate-key [--config FILE] [serve flags: --data-dir, --database, --server-name]\n"

const rotateUsage = `usage: conclave admin rotate-key [--config FILE] [serve flags]

Generates a new signing key for the server and retires the current one: the
old key is published in old_verify_keys of /_matrix/key/v2/server with
expired_ts = now, so other servers (and this one) go on verifying the events
it signed before now. Requests and new events are signed with the new key.

It reads the same configuration as 'conclave serve' (--config, --data-dir,
--database, --server-name; env CONCLAVE_*): run it with the server's.
On SQLite the key is the data directory's signing.key: STOP THE SERVER
FIRST (a running server holds the database and the command fails). On
PostgreSQL the key shared by every process is replaced in the database:
RESTART EVERY PROCESS right after, since a running process keeps signing
with the key it loaded, which is now published as expired.
`

func admin(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "rotate-key" {
		return rotateKey(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "register" {
		fmt.Fprint(stderr, adminUsage)
		return 2
	}
	fs := flag.NewFlagSet("admin register", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := fs.String("url", "http://127.0.0.1:8008", "server base URL")
	secret := fs.String("secret", "", "registration_shared_secret")
	user := fs.String("user", "", "localpart of the new user")
	password := fs.String("password", "", "password of the new user")
	isAdmin := fs.Bool("admin", false, "make the user a server admin")
	if err := fs.Parse(args[1:]); err != nil {
		fmt.Fprintf(stderr, "conclave admin register: %v\n%s", err, adminUsage)
		return 2
	}
	if *secret == "" || *user == "" || *password == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "conclave admin register: --secret, --user and --password are required\n%s", adminUsage)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id, err := adminclient.Register(ctx, nil, *url, *secret, *user, *password, *isAdmin)
	if err != nil {
		fmt.Fprintln(stderr, "conclave admin register:", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	fmt.Fprintln(stdout, id)
	return 0
}

func rotateKey(args []string, stdout, stderr io.Writer) int {
	for _, a := range args {
		if a == "--help" || a == "-h" {
			fmt.Fprint(stdout, rotateUsage)
			return 0
		}
	}
	cfg, err := config.Load(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "conclave admin rotate-key:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old, fresh, err := homeserver.RotateSigningKey(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "conclave admin rotate-key:", strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	fmt.Fprintf(stdout, "signing key of %s rotated: %s is now an old key (it keeps verifying what it signed), %s signs from now on.\n", cfg.ServerName, old.ID, fresh.ID)
	if strings.HasPrefix(cfg.Database, "postgres") {
		fmt.Fprintln(stdout, "Restart every conclave process of this database now.")
	} else {
		fmt.Fprintln(stdout, "Start the server again to use it.")
	}
	return 0
}
