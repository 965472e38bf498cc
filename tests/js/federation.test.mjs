// matrix-js-sdk 37 with its Rust crypto across two federating `conclave
// serve` processes: alice on server A, bob on server B, an encrypted room
// that spans both. Megolm messages decrypt both ways; then bob logs in on a
// second device, and what is sent after it joined decrypts there and what it
// sends decrypts for alice. Everything a client needs from the other side
// crosses federation: the invite and join, device lists (m.device_list_update
// for the new device), /user/keys/query and /user/keys/claim, and the room
// keys as to-device messages (m.direct_to_device).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

import { startFederation } from "./federation.mjs";

logger.setLevel(process.env.CONCLAVE_TEST_LOG ? "debug" : "error");

const WAIT_LIMIT_MS = 30000; // failure bound for things that cross federation and arrive through /sync

let fed;
const clients = [];

before(async () => {
    fed = await startFederation(2);
});

after(async () => {
    for (const c of clients) c.stopClient();
    await fed?.stop();
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

// startClient starts a client with Rust crypto (in memory) for the given
// credentials and waits for its first sync.
async function startClient(baseUrl, creds) {
    const client = sdk.createClient({
        baseUrl,
        userId: creds.user_id,
        accessToken: creds.access_token,
        deviceId: creds.device_id,
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

async function register(server, localpart) {
    const anon = sdk.createClient({ baseUrl: server.baseUrl });
    const reg = await anon.registerRequest({
        username: localpart,
        password: password(localpart),
        auth: { type: "m.login.dummy" },
    });
    return startClient(server.baseUrl, reg);
}

// login makes a new device for an existing user.
async function login(server, localpart) {
    const anon = sdk.createClient({ baseUrl: server.baseUrl });
    const res = await anon.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password: password(localpart),
    });
    return startClient(server.baseUrl, res);
}

// decryptedBody waits until the event is in the client's timeline and
// decrypted, and returns its body.
async function decryptedBody(client, roomId, eventId) {
    return waitFor(`decryption of ${eventId} by ${client.getUserId()}/${client.getDeviceId()}`, async () => {
        const room = client.getRoom(roomId);
        const ev = room?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId);
        if (!ev) return undefined;
        await client.decryptEventIfNeeded(ev);
        if (ev.isBeingDecrypted() || ev.isDecryptionFailure()) return undefined;
        return ev.getClearContent()?.body;
    });
}

async function knowsDevice(client, userId, deviceId) {
    const devices = await client.getCrypto().getUserDeviceInfo([userId]);
    return devices.get(userId)?.has(deviceId);
}

test("users on two servers exchange Megolm messages, and a second device joins", async () => {
    const [a, b] = fed.servers;
    const alice = await register(a, "alice");
    const bob = await register(b, "bob");
    assert.ok(alice.getUserId().endsWith(`:${a.serverName}`));
    assert.ok(bob.getUserId().endsWith(`:${b.serverName}`));

    const { room_id: roomId } = await alice.createRoom({
        preset: "private_chat",
        invite: [bob.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await waitFor("bob's invite over federation", () => bob.getRoom(roomId)?.getMyMembership() === "invite");
    await bob.joinRoom(roomId, { viaServers: [a.serverName] });
    await waitFor("bob's join in alice's view", () => alice.getRoom(roomId)?.getMember(bob.getUserId())?.membership === "join");
    await waitFor("encryption in bob's view", () => bob.getCrypto().isEncryptionEnabledInRoom(roomId));

    const { event_id: e1 } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "hello bob, from A" });
    assert.equal(await decryptedBody(bob, roomId, e1), "hello bob, from A");
    const { event_id: e2 } = await bob.sendMessage(roomId, { msgtype: "m.text", body: "hello alice, from B" });
    assert.equal(await decryptedBody(alice, roomId, e2), "hello alice, from B");

    // Neither server saw plaintext, each holds the other's event.
    for (const [client, id] of [[alice, e2], [bob, e1]]) {
        const raw = await client.fetchRoomEvent(roomId, id);
        assert.equal(raw.type, "m.room.encrypted");
        assert.equal(raw.content.algorithm, "m.megolm.v1.aes-sha2");
    }

    // Bob's second device on B. Alice's server learns of it from B's
    // m.device_list_update; alice's client from device_lists.changed.
    const bob2 = await login(b, "bob");
    assert.notEqual(bob2.getDeviceId(), bob.getDeviceId());
    await waitFor("bob's second device in the room", () => bob2.getRoom(roomId)?.getMyMembership() === "join");
    await waitFor("bob's second device in alice's view", () => knowsDevice(alice, bob.getUserId(), bob2.getDeviceId()));

    const { event_id: e3 } = await alice.sendMessage(roomId, { msgtype: "m.text", body: "after your second device" });
    assert.equal(await decryptedBody(bob2, roomId, e3), "after your second device");
    assert.equal(await decryptedBody(bob, roomId, e3), "after your second device");

    const { event_id: e4 } = await bob2.sendMessage(roomId, { msgtype: "m.text", body: "from bob's second device" });
    assert.equal(await decryptedBody(alice, roomId, e4), "from bob's second device");
    assert.equal(await decryptedBody(bob, roomId, e4), "from bob's second device");

    // And the first device's new session reaches the second device too.
    const { event_id: e5 } = await bob.sendMessage(roomId, { msgtype: "m.text", body: "and from the first again" });
    assert.equal(await decryptedBody(alice, roomId, e5), "and from the first again");
    assert.equal(await decryptedBody(bob2, roomId, e5), "and from the first again");
});
