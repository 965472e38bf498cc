// matrix-js-sdk 37 with its Rust crypto (the stack Element Web runs) against a
// real `conclave serve`: two users, an encrypted room, messages that decrypt
// both ways, and cross-signing bootstrapped with password UIA and seen by the
// other user.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

import { startServer } from "./server.mjs";

logger.setLevel(process.env.CONCLAVE_TEST_LOG ? "debug" : "error");

const WAIT_LIMIT_MS = 20000; // failure bound for things that arrive through /sync

let server;
const clients = [];

before(async () => {
    server = await startServer();
});

after(async () => {
    for (const c of clients) c.stopClient();
    await server?.stop();
});

const password = (localpart) => `correct horse battery ${localpart}`;

async function waitFor(what, fn) {
    const until = Date.now() + WAIT_LIMIT_MS;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

// register makes a user with m.login.dummy, starts a client with Rust crypto
// (in memory) and waits for its first sync.
async function register(localpart) {
    const anon = sdk.createClient({ baseUrl: server.baseUrl });
    const reg = await anon.registerRequest({
        username: localpart,
        password: password(localpart),
        auth: { type: "m.login.dummy" },
    });
    const client = sdk.createClient({
        baseUrl: server.baseUrl,
        userId: reg.user_id,
        accessToken: reg.access_token,
        deviceId: reg.device_id,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === "PREPARED") resolve();
            if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    clients.push(client);
    return client;
}

// decryptedBody waits until the event is in the client's timeline and
// decrypted, and returns its body.
async function decryptedBody(client, roomId, eventId) {
    return waitFor(`decryption of ${eventId} by ${client.getUserId()}`, async () => {
        const room = client.getRoom(roomId);
        const ev = room?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId);
        if (!ev) return undefined;
        await client.decryptEventIfNeeded(ev);
        if (ev.isBeingDecrypted() || ev.isDecryptionFailure()) return undefined;
        return ev.getClearContent()?.body;
    });
}

test("two users exchange Megolm messages and see each other's cross-signing keys", async () => {
    const alice = await register("alice");
    const bob = await register("bob");

    const { room_id: roomId } = await alice.createRoom({
        preset: "private_chat",
        invite: [bob.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await waitFor("bob's invite", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
    await bob.joinRoom(roomId);
    await waitFor("bob's join in alice's view", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
    assert.ok(await alice.getCrypto().isEncryptionEnabledInRoom(roomId), "room is encrypted for alice");
    await waitFor("encryption in bob's view", () => bob.getCrypto().isEncryptionEnabledInRoom(roomId));

    const { event_id: e1 } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello bob" });
    assert.equal(await decryptedBody(bob, roomId, e1), "hello bob");
    const { event_id: e2 } = await bob.sendMessage(roomId, { msgtype: "m.text", body: "hello alice" });
    assert.equal(await decryptedBody(alice, roomId, e2), "hello alice");

    // The server only ever saw ciphertext.
    for (const id of [e1, e2]) {
        const raw = await alice.fetchRoomEvent(roomId, id);
        assert.equal(raw.type, "m.room.encrypted");
        assert.equal(raw.content.algorithm, "m.megolm.v1.aes-sha2");
    }

    // Cross-signing, with password UIA for the key upload.
    const uia = (localpart) => async (makeRequest) => {
        await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: localpart },
            password: password(localpart),
        });
    };
    await alice.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia("alice") });
    await bob.getCrypto().bootstrapCrossSigning({ authUploadDeviceSigningKeys: uia("bob") });
    assert.ok(await alice.getCrypto().isCrossSigningReady(), "alice's cross-signing is ready");
    assert.ok(await bob.getCrypto().isCrossSigningReady(), "bob's cross-signing is ready");

    const aliceStatus = await alice.getCrypto().getCrossSigningStatus();
    assert.ok(aliceStatus.publicKeysOnDevice && aliceStatus.privateKeysCachedLocally.masterKey);

    await waitFor("alice's cross-signing keys in bob's view", () => bob.getCrypto().userHasCrossSigningKeys(alice.getUserId(), true));
    await waitFor("bob's cross-signing keys in alice's view", () => alice.getCrypto().userHasCrossSigningKeys(bob.getUserId(), true));
    const aliceMasterOwn = await alice.getCrypto().getCrossSigningKeyId();
    const aliceIdentityForBob = await bob.getCrypto().getUserVerificationStatus(alice.getUserId());
    assert.ok(aliceMasterOwn, "alice has a master key id");
    assert.equal(aliceIdentityForBob.isCrossSigningVerified(), false, "bob has not verified alice");

    // Alice's device is signed by her self-signing key, as bob sees it.
    await waitFor("alice's device cross-signed in bob's view", async () => {
        const st = await bob.getCrypto().getDeviceVerificationStatus(alice.getUserId(), alice.getDeviceId());
        return st?.signedByOwner;
    });

    // Messages still flow after the key changes.
    const { event_id: e3 } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "after cross-signing" });
    assert.equal(await decryptedBody(bob, roomId, e3), "after cross-signing");
});
