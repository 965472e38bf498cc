// Sessions: logging in, registering, and starting a matrix-js-sdk client with
// its Rust crypto, whose keys live in IndexedDB so that a reload keeps
// decrypting. The access token is kept in localStorage.
import { initAsync } from "@matrix-org/matrix-sdk-crypto-wasm";
import { ClientEvent, createClient, MatrixClient, MatrixError, SyncState } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

declare const CRYPTO_WASM: string; // the hashed .wasm name, set by build.mjs

// localStorage["conclave.debug"] = "1" turns on the SDK's debug log.
// (The SDK's logger is a loglevel logger; its type does not say so.)
(logger as unknown as { setLevel(level: string): void }).setLevel(localStorage.getItem("conclave.debug") ? "debug" : "warn");

export interface Session {
    userId: string;
    deviceId: string;
    accessToken: string;
}

const SESSION_KEY = "conclave.session";
export const baseUrl = location.origin;

export function savedSession(): Session | null {
    try {
        const s = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
        if (s && typeof s.userId === "string" && typeof s.deviceId === "string" && typeof s.accessToken === "string") {
            return s;
        }
    } catch {
        // a damaged entry: start over
    }
    return null;
}

// serverName is the part of user IDs after the colon, for hints.
export function serverName(): string {
    return savedSession()?.userId.split(":").slice(1).join(":") || location.hostname;
}

// Start fetching and compiling the wasm now, while the user types.
const cryptoReady = initAsync(new URL(CRYPTO_WASM, import.meta.url));
cryptoReady.catch(() => {}); // reported when a client starts

// Secret storage keys this page knows, in memory only: the one created at
// sign-up (until the recovery key has been shown) and the recovery key the
// user typed on a new session. The SDK asks for them through
// cryptoCallbacks when it reads or writes secret storage.
const secretKeys = new Map<string, Uint8Array>();
let typedRecoveryKey: Uint8Array | null = null;

export function useRecoveryKey(key: Uint8Array | null): void {
    typedRecoveryKey = key;
}

export function forgetSecretKeys(): void {
    secretKeys.clear();
    typedRecoveryKey = null;
}

const cryptoCallbacks = {
    getSecretStorageKey: async ({ keys }: { keys: Record<string, unknown> }): Promise<[string, Uint8Array] | null> => {
        for (const id of Object.keys(keys)) {
            const k = secretKeys.get(id);
            if (k) return [id, k];
        }
        const ids = Object.keys(keys);
        if (typedRecoveryKey && ids.length > 0) return [ids[0], typedRecoveryKey];
        return null;
    },
    cacheSecretStorageKey: (keyId: string, _info: unknown, key: Uint8Array) => {
        secretKeys.set(keyId, key);
    },
};

export type Failure = "badLogin" | "registrationClosed" | "tokenRequired" | "badToken" | "networkError" | "other";

export class AuthError extends Error {
    constructor(
        public kind: Failure,
        message: string,
    ) {
        super(message);
    }
}

function authError(e: unknown): AuthError {
    if (e instanceof MatrixError) {
        if (e.errcode === "M_FORBIDDEN" && e.httpStatus === 403) return new AuthError("badLogin", e.message);
        return new AuthError("other", e.data?.error ?? e.message);
    }
    if (e instanceof TypeError) return new AuthError("networkError", String(e));
    return new AuthError("other", String(e));
}

const deviceName = () => `Conclave Web (${navigator.platform || "browser"})`;

export async function login(user: string, password: string): Promise<Session> {
    const anon = createClient({ baseUrl });
    try {
        const r = await anon.loginRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user },
            password,
            initial_device_display_name: deviceName(),
        });
        return { userId: r.user_id, deviceId: r.device_id, accessToken: r.access_token };
    } catch (e) {
        throw authError(e);
    }
}

export interface LoginOptions {
    password: boolean;
    sso: { id?: string; name: string }[]; // identity providers; empty: no SSO
}

// loginOptions reads GET /login: password and/or single sign-on.
export async function loginOptions(): Promise<LoginOptions> {
    const { flows } = await createClient({ baseUrl }).loginFlows();
    const opts: LoginOptions = { password: false, sso: [] };
    for (const f of flows) {
        if (f.type === "m.login.password") opts.password = true;
        if (f.type === "m.login.sso") {
            const idps = (f as { identity_providers?: { id?: string; name?: string }[] }).identity_providers ?? [];
            opts.sso = idps.length ? idps.map((p) => ({ id: p.id, name: p.name ?? p.id ?? "SSO" })) : [{ name: "SSO" }];
        }
    }
    return opts;
}

// ssoRedirect leaves for the identity provider; the server brings the
// browser back to / with ?loginToken= (Client-Server API, "Client login via SSO").
export function ssoRedirect(idpId?: string): void {
    const path = "/_matrix/client/v3/login/sso/redirect" + (idpId ? "/" + encodeURIComponent(idpId) : "");
    location.assign(`${baseUrl}${path}?redirectUrl=${encodeURIComponent(location.origin + "/")}`);
}

// loginWithToken finishes an SSO login with the server's loginToken.
export async function loginWithToken(token: string): Promise<Session> {
    try {
        const r = await createClient({ baseUrl }).loginRequest({
            type: "m.login.token",
            token,
            initial_device_display_name: deviceName(),
        } as never);
        return { userId: r.user_id, deviceId: r.device_id, accessToken: r.access_token };
    } catch (e) {
        throw authError(e);
    }
}

// register creates an account with a flow this client can finish:
// m.login.registration_token when a token is given (or required), else
// m.login.dummy (open registration). Client-Server API, "Account
// registration" and "Token-authenticated registration". displayName is the
// name others see, the username when empty.
export async function register(username: string, password: string, token = "", displayName = ""): Promise<Session> {
    const anon = createClient({ baseUrl });
    let session: string | undefined;
    let stage: "m.login.dummy" | "m.login.registration_token";
    try {
        await anon.registerRequest({ username, password, initial_device_display_name: deviceName() });
        throw new AuthError("other", "registration finished without authentication");
    } catch (e) {
        if (e instanceof AuthError) throw e;
        const data = (e as MatrixError).data as { flows?: { stages: string[] }[]; session?: string } | undefined;
        if (!(e instanceof MatrixError) || e.httpStatus !== 401 || !data?.flows) {
            if (e instanceof MatrixError && e.errcode === "M_FORBIDDEN") throw new AuthError("registrationClosed", e.message);
            throw authError(e);
        }
        const single = (s: string) => data.flows!.some((f) => f.stages.length === 1 && f.stages[0] === s);
        if (token && single("m.login.registration_token")) stage = "m.login.registration_token";
        else if (single("m.login.dummy")) stage = "m.login.dummy";
        else if (single("m.login.registration_token")) throw new AuthError("tokenRequired", "a registration token is needed");
        else throw new AuthError("registrationClosed", "no flow this client can complete");
        session = data.session;
    }
    try {
        const r = await anon.registerRequest({
            username,
            password,
            initial_device_display_name: deviceName(),
            auth: stage === "m.login.dummy" ? { type: stage, session } : ({ type: stage, token, session } as never),
        });
        if (!r.access_token || !r.device_id) throw new AuthError("other", "no access token in the registration response");
        // The server sets no display name: the one given, else the username
        // (what Synapse sets), rather than the full user ID; best effort.
        await createClient({ baseUrl, userId: r.user_id, accessToken: r.access_token })
            .setDisplayName(displayName || username)
            .catch(() => {});
        return { userId: r.user_id, deviceId: r.device_id, accessToken: r.access_token };
    } catch (e) {
        if (e instanceof AuthError) throw e;
        // The stage was not accepted: for a token, the token is wrong.
        if (stage === "m.login.registration_token" && e instanceof MatrixError && e.httpStatus === 401) throw new AuthError("badToken", e.message);
        throw authError(e);
    }
}

// start saves the session, starts a client with Rust crypto in IndexedDB and
// resolves once the first sync is in.
export async function start(s: Session, progress: (stage: "crypto" | "sync") => void): Promise<MatrixClient> {
    localStorage.setItem(SESSION_KEY, JSON.stringify(s));
    const client = createClient({
        baseUrl,
        userId: s.userId,
        deviceId: s.deviceId,
        accessToken: s.accessToken,
        timelineSupport: true,
        cryptoCallbacks,
    });
    progress("crypto");
    await cryptoReady;
    try {
        await client.initRustCrypto();
    } catch {
        // The store belongs to another device (an earlier session that was not
        // logged out cleanly): start a fresh one for this device.
        await client.clearStores();
        await client.initRustCrypto();
    }
    progress("sync");
    const prepared = new Promise<void>((resolve, reject) => {
        const onSync = (state: SyncState, _prev: SyncState | null, data?: { error?: Error }) => {
            if (state === SyncState.Prepared || state === SyncState.Syncing) {
                client.off(ClientEvent.Sync, onSync);
                resolve();
            } else if (state === SyncState.Error && data?.error instanceof MatrixError && data.error.errcode === "M_UNKNOWN_TOKEN") {
                // Signed out while away: this device's keys go too.
                client.off(ClientEvent.Sync, onSync);
                client.stopClient();
                client.clearStores().then(
                    () => reject(data.error),
                    () => reject(data.error),
                );
            }
        };
        client.on(ClientEvent.Sync, onSync);
    });
    // threadSupport: thread replies live in their thread, not in the room's
    // timeline (the server has /relations, /threads and threaded receipts).
    await client.startClient({ initialSyncLimit: 30, lazyLoadMembers: true, threadSupport: true });
    await prepared;
    return client;
}

// logout ends the session on the server (best effort; not when the server
// already did: revoked) and forgets it here, keys included: they belong to a
// device that no longer exists.
export async function logout(client: MatrixClient | null, revoked = false): Promise<void> {
    localStorage.removeItem(SESSION_KEY);
    if (client) {
        try {
            if (revoked) throw new Error("signed out by the server");
            await client.logout(true);
        } catch {
            client.stopClient();
        }
        await client.clearStores().catch(() => {});
    }
}

export function forgetSession(): void {
    localStorage.removeItem(SESSION_KEY);
}
