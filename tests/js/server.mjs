// Builds conclave from this checkout and runs `conclave serve` on a free
// loopback port with open registration, for the tests in this directory.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = createServer();
        srv.on("error", reject);
        srv.listen(0, "127.0.0.1", () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

export async function waitForVersions(baseUrl, proc, deadlineMs) {
    const until = Date.now() + deadlineMs;
    for (;;) {
        if (proc.exitCode !== null) throw new Error(`conclave exited with ${proc.exitCode}`);
        try {
            const res = await fetch(`${baseUrl}/_matrix/client/versions`);
            if (res.status === 200) return;
        } catch {
            // not listening yet
        }
        if (Date.now() > until) throw new Error("conclave did not answer /versions");
        await new Promise((r) => setTimeout(r, 50));
    }
}

// startServer returns { baseUrl, stop }; extraArgs are added to the command
// line (a later flag wins over the defaults above it). opts.port: listen
// there (a test that must know the URL before the server starts, such as
// an OIDC provider's redirect URI) instead of a free port.
export async function startServer(extraArgs = [], opts = {}) {
    const dir = mkdtempSync(path.join(tmpdir(), "conclave-js-"));
    const bin = path.join(dir, "conclave");
    execFileSync(process.env.GO ?? "go", ["build", "-o", bin, "./cmd/conclave"], { cwd: repo, stdio: "inherit" });
    const port = opts.port ?? (await freePort());
    const proc = spawn(bin, [
        "serve",
        "--server-name", "localhost",
        `--listen=127.0.0.1:${port}`,
        "--data-dir", path.join(dir, "data"),
        "--enable-registration=true",
        "--rate-limits=false",
        "--password-hash-memory-kib=64",
        "--log-level", process.env.CONCLAVE_TEST_LOG ? "debug" : "warn",
        ...extraArgs,
    ], { stdio: ["ignore", "inherit", "inherit"] });
    const baseUrl = `http://127.0.0.1:${port}`;
    try {
        await waitForVersions(baseUrl, proc, 20000);
    } catch (e) {
        proc.kill("SIGKILL");
        throw e;
    }
    return {
        baseUrl,
        async stop() {
            if (proc.exitCode === null) {
                const exited = new Promise((r) => proc.once("exit", r));
                proc.kill("SIGTERM");
                await exited;
            }
            rmSync(dir, { recursive: true, force: true });
        },
    };
}
