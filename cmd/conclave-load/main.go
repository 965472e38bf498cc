// Command conclave-load drives a Matrix homeserver on this machine over the
// Client-Server API and reports throughput, latency, CPU and memory. It only
// wires flags to internal/loadtest; see docs/benchmarks.md for how to run it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"conclave/internal/loadtest"
)

const usage = `usage: conclave-load [flags] <scenario>

scenarios:
  messages          U users long-poll /sync in R rooms of M members while messages are sent
  federation        messages with every other user on a second server (--peer-url): every room spans
                    both servers, so every message crosses the boundary
  initial-sync      one user in K rooms with history: full and incremental /sync times per K
  join-large-room   a newcomer joins a room of L members: join time and first /sync
  idle              U users long-poll with no traffic: server memory per client and CPU
  e2ee              key upload and claim storms, device-list updates to a room-mate, to-device fan-out
                    to a user's many devices; with --peer-url the user is on the second server
  sliding-sync      simplified sliding sync (Element X): first and incremental responses for an
                    account in --ss-rooms rooms; U idle long-polling connections: memory and CPU

The server must run on this machine (loopback URL) and without rate limits
(conclave serve --enable-registration --rate-limits=false; or give --secret
for the shared-secret admin API and raise the per-user limits the scenario
meets: --event-rate-*, --full-sync-rate-*). A 429 is retried after its
retry_after_ms, which slows the run and skews its figures.
Give --pid for the server's CPU and memory figures.

flags:
`

type report struct {
	Scenario  string    `json:"scenario"`
	Label     string    `json:"label,omitempty"`
	Date      time.Time `json:"date"`
	URL       string    `json:"url"`
	GoVersion string    `json:"tool_go_version"`
	CPUs      int       `json:"cpus"`
	Result    any       `json:"result"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("conclave-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	var (
		base     = fs.String("url", "http://127.0.0.1:8008", "homeserver client API base URL (loopback only)")
		pid      = fs.Int("pid", 0, "the server's process ID, for its CPU and memory figures")
		peerURL  = fs.String("peer-url", "", "federation, join-large-room, e2ee: a second server's client API base URL (loopback only), federating with --url")
		peerPID  = fs.Int("peer-pid", 0, "federation, join-large-room, e2ee: the second server's process ID")
		dbPID    = fs.Int("db-pid", 0, "a separate database server's main process ID (PostgreSQL postmaster), for its CPU")
		secret   = fs.String("secret", "", "registration shared secret (Synapse admin API); empty: open registration")
		out      = fs.String("out", "", "write the result as JSON to this file")
		label    = fs.String("label", "", "free text stored in the JSON (e.g. server and database)")
		par      = fs.Int("parallel", 8, "concurrency of setup requests")
		limit    = fs.Duration("max-duration", 15*time.Minute, "stop the whole run after this long")
		users    = fs.Int("users", 200, "messages/idle: users long-polling /sync")
		rooms    = fs.Int("rooms", 20, "messages: rooms")
		members  = fs.Int("members", 20, "messages: members per room")
		senders  = fs.Int("senders", 20, "messages: concurrent senders (closed loop)")
		messages = fs.Int("messages", 5000, "messages: messages to send")
		keywords = fs.Bool("keywords", false, "messages: each user adds one keyword push rule first")
		rate     = fs.Float64("rate", 0, "messages: send at this fixed rate (messages/s) instead of closed loop")
		drain    = fs.Duration("drain", 60*time.Second, "messages: how long to wait for delivery after the last send")
		ks       = fs.String("k", "50,100,300", "initial-sync: room counts")
		history  = fs.Int("history", 20, "initial-sync: messages per room")
		large    = fs.Int("large-members", 2000, "join-large-room: members of the room")
		idleSecs = fs.Duration("idle-for", 20*time.Second, "idle: how long to measure")
		devices  = fs.Int("devices", 50, "e2ee: devices of the target user")
		otks     = fs.Int("otks", 50, "e2ee: one-time keys per device")
		claimers = fs.Int("claimers", 20, "e2ee: concurrent claimers")
		ssRooms  = fs.Int("ss-rooms", 1000, "sliding-sync: rooms of the measured account")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	scenario := fs.Arg(0)
	loadtest.DatabasePID = *dbPID
	conns := max(*users, *claimers, *devices, *large/10) + *senders + *par + 64
	srv, err := loadtest.NewServer(*base, *secret, conns)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	cfg := &loadtest.Config{
		Server:   srv,
		PID:      *pid,
		Prefix:   "lt" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
		Parallel: *par,
		Log: func(format string, a ...any) {
			fmt.Fprintf(stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()

	var result any
	switch scenario {
	case "messages", "federation":
		if scenario == "federation" {
			if *peerURL == "" {
				fmt.Fprintln(stderr, "conclave-load: federation needs --peer-url (a second server federating with --url)")
				return 2
			}
			if cfg.Peer, err = loadtest.NewServer(*peerURL, *secret, conns); err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
			cfg.PeerPID = *peerPID
		}
		result, err = loadtest.Messages(ctx, cfg, loadtest.MessagesParams{
			Users: *users, Rooms: *rooms, Members: *members, Senders: *senders, Messages: *messages, Rate: *rate, Drain: *drain, Keywords: *keywords,
		})
	case "initial-sync":
		var list []int
		for _, s := range strings.Split(*ks, ",") {
			n, perr := strconv.Atoi(strings.TrimSpace(s))
			if perr != nil || n < 1 || n > 10000 {
				fmt.Fprintf(stderr, "conclave-load: bad -k value %q\n", s)
				return 2
			}
			list = append(list, n)
		}
		result, err = loadtest.InitialSync(ctx, cfg, loadtest.InitialSyncParams{Ks: list, History: *history})
	case "join-large-room":
		if *peerURL != "" {
			// Newcomers join from a second server, over federation.
			if cfg.Peer, err = loadtest.NewServer(*peerURL, *secret, conns); err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
			cfg.PeerPID = *peerPID
		}
		result, err = loadtest.JoinLargeRoom(ctx, cfg, loadtest.JoinLargeRoomParams{Members: *large})
	case "idle":
		result, err = loadtest.Idle(ctx, cfg, loadtest.IdleParams{Users: *users, For: *idleSecs})
	case "sliding-sync":
		result, err = loadtest.SlidingSync(ctx, cfg, loadtest.SlidingSyncParams{Rooms: *ssRooms, Users: *users, For: *idleSecs})
	case "e2ee":
		if *peerURL != "" {
			// The target user and its devices on a second server, the
			// claimer here: every key and device list crosses federation.
			if cfg.Peer, err = loadtest.NewServer(*peerURL, *secret, conns); err != nil {
				fmt.Fprintln(stderr, err)
				return 2
			}
			cfg.PeerPID = *peerPID
		}
		result, err = loadtest.E2EE(ctx, cfg, loadtest.E2EEParams{Devices: *devices, OneTimeKeys: *otks, Claimers: *claimers})
	default:
		fmt.Fprintf(stderr, "conclave-load: unknown scenario %q\n", scenario)
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "conclave-load:", err)
		return 1
	}
	rep := report{Scenario: scenario, Label: *label, Date: time.Now().UTC(), URL: *base, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(), Result: result}
	js, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Fprintln(stdout, string(js))
	if *out != "" {
		if err := os.WriteFile(*out, append(js, '\n'), 0o644); err != nil {
			fmt.Fprintln(stderr, "conclave-load:", err)
			return 1
		}
	}
	return 0
}
