// Starts two `conclave serve` processes that federate with each other on
// loopback, for the tests in this directory. One throwaway CA (testca.go)
// issues both servers' certificates and is what each trusts for federation;
// the servers are named localhost:PORT after their federation listeners and
// allow only each other. Clients talk plain HTTP to their own server's client
// listener, so Node itself trusts nothing.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { freePort, waitForVersions } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const go = process.env.GO ?? "go";

// startFederation returns { servers: [{ baseUrl, serverName }], stop }.
export async function startFederation(count = 2) {
    const dir = mkdtempSync(path.join(tmpdir(), "conclave-js-fed-"));
    const bin = path.join(dir, "conclave");
    execFileSync(go, ["build", "-o", bin, "./cmd/conclave"], { cwd: repo, stdio: "inherit" });
    execFileSync(go, ["run", "testca.go", dir], { cwd: here, stdio: "inherit" });

    const fedPorts = [];
    for (let i = 0; i < count; i++) fedPorts.push(await freePort());
    const names = fedPorts.map((p) => `localhost:${p}`);
    const procs = [];
    const servers = [];
    const stop = async () => {
        await Promise.all(procs.map(async (proc) => {
            if (proc.exitCode === null && proc.signalCode === null) {
                const exited = new Promise((r) => proc.once("exit", r));
                proc.kill("SIGTERM");
                await exited;
            }
        }));
        rmSync(dir, { recursive: true, force: true });
    };
    try {
        for (let i = 0; i < count; i++) {
            const port = await freePort();
            const dataDir = path.join(dir, `data${i}`);
            mkdirSync(dataDir);
            const proc = spawn(bin, [
                "serve",
                "--server-name", names[i],
                `--listen=127.0.0.1:${port}`,
                `--federation-listen=127.0.0.1:${fedPorts[i]}`,
                "--tls-ca-cert", path.join(dir, "ca.crt"),
                "--tls-ca-key", path.join(dir, "ca.key"),
                "--federation-allow", names.join(","),
                "--federation-allow-private-addresses",
                "--data-dir", dataDir,
                "--enable-registration=true",
                "--rate-limits=false",
                "--password-hash-memory-kib=64",
                "--shutdown-timeout", "1s",
                "--log-level", process.env.CONCLAVE_TEST_LOG ? "debug" : "warn",
            ], { stdio: ["ignore", "inherit", "inherit"] });
            procs.push(proc);
            servers.push({ baseUrl: `http://127.0.0.1:${port}`, serverName: names[i], proc });
        }
        await Promise.all(servers.map((s) => waitForVersions(s.baseUrl, s.proc, 20000)));
    } catch (e) {
        await stop();
        throw e;
    }
    return { servers, stop };
}
