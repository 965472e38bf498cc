// matrix-js-sdk's SlidingSync — the class Element Web's sliding-sync mode
// uses, which since matrix-js-sdk 38 posts to the simplified sliding sync
// endpoint (MSC4186, org.matrix.simplified_msc3575) — with its Rust crypto
// against a real `conclave serve`: an account in 500 rooms gets its room list
// (a first window, then one that grows over the whole list, as Element Web
// does), a new message moves its room to the top, an invite appears, and two
// such clients hold an encrypted conversation (to_device and e2ee
// extensions).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";
import { SlidingSync, SlidingSyncEvent, SlidingSyncState } from "matrix-js-sdk/lib/sliding-sync.js";

import { startServer } from "../js/server.mjs";

logger.setLevel(process.env.CONCLAVE_TEST_LOG ? "debug" : "error");

// Each client logs through its own logger (its children are made when the
// client starts): errors only, unless CONCLAVE_TEST_LOG is set.
function quietLogger(prefix = "") {
    const out = (level) => (...msg) => {
        if (process.env.CONCLAVE_TEST_LOG || level === "error") console.error(prefix, ...msg);
    };
    const l = { trace: out("trace"), debug: out("debug"), info: out("info"), warn: out("warn"), error: out("error") };
    l.log = l.debug;
    l.getChild = (ns) => quietLogger(`${prefix}${ns}`);
    return l;
}
// Parts of the SDK (MatrixRTC sessions) log through children of the root logger.
if (!process.env.CONCLAVE_TEST_LOG) logger.getChild = (ns) => quietLogger(ns);

const WAIT_LIMIT_MS = 20000; // failure bound for things that arrive through sliding sync
const ROOMS = 500;
const LIST = "room_list";

let server;
const clients = [];

before(async () => {
    server = await startServer();
});

after(async () => {
    for (const c of clients) c.stopClient();
    await server?.stop();
});

async function waitFor(what, fn) {
    const until = Date.now() + WAIT_LIMIT_MS;
    for (;;) {
        const v = await fn();
        if (v) return v;
        if (Date.now() > until) throw new Error(`gave up waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
    }
}

// api calls the client-server API directly (for setting up fixtures fast).
async function api(token, method, path, body) {
    const res = await fetch(`${server.baseUrl}/_matrix/client/v3${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
    return json;
}

async function registerUser(localpart) {
    const res = await fetch(`${server.baseUrl}/_matrix/client/v3/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
            username: localpart,
            password: `correct horse battery ${localpart}`,
            auth: { type: "m.login.dummy" },
        }),
    });
    const reg = await res.json();
    assert.equal(res.status, 200, JSON.stringify(reg));
    return reg;
}

// createRooms makes n named rooms for the token's user, a few at a time (the
// server has two cores), oldest first: room i is named "room NNN".
async function createRooms(token, n) {
    const ids = new Array(n);
    let next = 0;
    const worker = async () => {
        while (next < n) {
            const i = next++;
            const { room_id } = await api(token, "POST", "/createRoom", { preset: "private_chat", name: `room ${String(i).padStart(3, "0")}` });
            ids[i] = room_id;
        }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    return ids;
}

// Element Web's sliding sync room list (SlidingSyncManager): one list with a
// first window, timeline_limit 1 and the state a room tile needs; opened
// rooms are subscribed with all their state and a longer timeline.
const listParams = (ranges) => ({
    ranges,
    timeline_limit: 1,
    required_state: [
        ["m.room.join_rules", ""],
        ["m.room.avatar", ""],
        ["m.room.tombstone", ""],
        ["m.room.encryption", ""],
        ["m.room.create", ""],
        ["m.room.name", ""],
        ["m.room.topic", ""],
        ["m.room.member", "$ME"],
        ["m.room.member", "$LAZY"],
    ],
    filters: {},
});
const roomSubscription = { timeline_limit: 50, required_state: [["*", "*"]] };

// startSlidingClient starts a client with Rust crypto (in memory) syncing
// through SlidingSync, and waits for its first response. It returns the
// client, its SlidingSync and the raw responses seen (latest last).
async function startSlidingClient(reg, ranges) {
    const client = sdk.createClient({
        baseUrl: server.baseUrl,
        userId: reg.user_id,
        accessToken: reg.access_token,
        deviceId: reg.device_id,
        logger: quietLogger(),
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const ss = new SlidingSync(server.baseUrl, new Map([[LIST, listParams(ranges)]]), roomSubscription, client, 10000);
    const responses = [];
    ss.on(SlidingSyncEvent.Lifecycle, (state, resp, err) => {
        if (state === SlidingSyncState.RequestFinished && resp) responses.push(resp);
        if (err) logger.error("sliding sync error", err);
    });
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === "PREPARED") resolve();
            if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
        });
    });
    await client.startClient({ slidingSync: ss });
    await prepared;
    clients.push(client);
    return { client, ss, responses };
}

// latestWindow is the list's window in the latest response that carried it
// (the server sends the window only when it changed).
function latestWindow(responses) {
    for (let i = responses.length - 1; i >= 0; i--) {
        const ops = responses[i].lists?.[LIST]?.ops;
        if (ops?.length) return ops[0].room_ids ?? [];
    }
    return [];
}

// byRecency is the client's room list as Element Web orders it: bump_stamp,
// most recent first.
const byRecency = (client) =>
    client
        .getRooms()
        .filter((r) => r.getMyMembership() === "join" || r.getMyMembership() === "invite")
        .sort((a, b) => (b.getBumpStamp() ?? 0) - (a.getBumpStamp() ?? 0));

let alice; // { reg, client, ss, responses, roomIds }
let bobReg;

test("a room list of 500 rooms arrives: the first window, then the whole list", async () => {
    const reg = await registerUser("alice");
    bobReg = await registerUser("bob");
    const roomIds = await createRooms(reg.access_token, ROOMS);

    const { client, ss, responses } = await startSlidingClient(reg, [[0, 19]]);
    alice = { reg, client, ss, responses, roomIds };
    assert.equal(ss.getListData(LIST).joinedCount, ROOMS, "the list's count is every room");
    // The first window: the 20 most recent rooms, newest first, with their names.
    const first = responses[0];
    assert.equal(first.lists[LIST].count, ROOMS);
    const window = first.lists[LIST].ops[0].room_ids;
    assert.equal(window.length, 20);
    for (const id of window) {
        assert.equal(client.getRoom(id)?.name, first.rooms[id].name);
        assert.ok(first.rooms[id].initial);
        assert.equal(first.rooms[id].timeline.length, 1);
    }

    // Element Web then grows the window over the whole list.
    ss.setListRanges(LIST, [[0, ROOMS - 1]]);
    await waitFor("all 500 rooms in the client", () => roomIds.every((id) => client.getRoom(id)?.getMyMembership() === "join"));
    // The client's order (by bump_stamp) is the server's window, which
    // begins with the first window.
    await waitFor("the whole list's window", () => latestWindow(responses).length === ROOMS);
    const serverOrder = latestWindow(responses);
    assert.deepEqual([...serverOrder].sort(), [...roomIds].sort());
    assert.deepEqual(serverOrder.slice(0, 20), window);
    assert.deepEqual(byRecency(client).map((r) => r.roomId), serverOrder);
    assert.equal(client.getRoom(roomIds[0]).name, "room 000");
    assert.equal(client.getRoom(roomIds[ROOMS - 1]).name, `room ${ROOMS - 1}`);
});

test("a new message moves its room to the top", async () => {
    const { client, roomIds, reg } = alice;
    const oldest = byRecency(client).at(-1).roomId;
    await api(reg.access_token, "PUT", `/rooms/${encodeURIComponent(oldest)}/send/m.room.message/t1`, { msgtype: "m.text", body: "back on top" });
    await waitFor("the room at the top of the client's list", () => byRecency(client)[0]?.roomId === oldest);
    await waitFor("the room at the top of the server's window", () => latestWindow(alice.responses)[0] === oldest);
    const ev = client.getRoom(oldest).getLiveTimeline().getEvents().at(-1);
    assert.equal(ev.getContent().body, "back on top");
    assert.equal(byRecency(client).length, roomIds.length);
});

test("an invite appears", async () => {
    const { client } = alice;
    const { room_id: roomId } = await api(bobReg.access_token, "POST", "/createRoom", {
        preset: "private_chat",
        name: "bob's invitation",
        invite: [alice.reg.user_id],
    });
    const room = await waitFor("the invite in alice's client", () => {
        const r = client.getRoom(roomId);
        return r?.getMyMembership() === "invite" ? r : undefined;
    });
    assert.equal(room.name, "bob's invitation");
    await waitFor("the invite at the top of the list", () => byRecency(client)[0]?.roomId === roomId);
    assert.equal(alice.ss.getListData(LIST).joinedCount, ROOMS + 1);
});

test("typing, a read receipt and a new name arrive; a room left goes", async () => {
    const { client, reg } = alice;
    const { room_id: roomId } = await api(bobReg.access_token, "POST", "/createRoom", { preset: "public_chat", name: "chatter" });
    await api(reg.access_token, "POST", `/join/${encodeURIComponent(roomId)}`, {});
    await waitFor("the joined room in alice's client", () => client.getRoom(roomId)?.getMyMembership() === "join");
    const { event_id: msg } = await api(bobReg.access_token, "PUT", `/rooms/${encodeURIComponent(roomId)}/send/m.room.message/c1`, { msgtype: "m.text", body: "read me" });
    await waitFor("bob's message", () => client.getRoom(roomId)?.findEventById(msg));
    // typing and receipts extensions
    await api(bobReg.access_token, "PUT", `/rooms/${encodeURIComponent(roomId)}/typing/${encodeURIComponent(bobReg.user_id)}`, { typing: true, timeout: 30000 });
    await waitFor("bob typing", () => client.getRoom(roomId)?.getMember(bobReg.user_id)?.typing);
    await api(bobReg.access_token, "POST", `/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(msg)}`, {});
    await waitFor("bob's receipt", () => client.getRoom(roomId)?.getEventReadUpTo(bobReg.user_id) === msg);
    // required_state: a new name
    await api(bobReg.access_token, "PUT", `/rooms/${encodeURIComponent(roomId)}/state/m.room.name/`, { name: "renamed" });
    await waitFor("the new name", () => client.getRoom(roomId)?.name === "renamed");
    // leaving: the room comes once more with the leave
    await client.leave(roomId);
    await waitFor("the leave in alice's client", () => client.getRoom(roomId)?.getMyMembership() === "leave");
});

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

test("two sliding sync clients hold an encrypted conversation", async () => {
    const a = alice.client;
    const { client: b } = await startSlidingClient(bobReg, [[0, 19]]);

    const { room_id: roomId } = await b.createRoom({
        preset: "private_chat",
        invite: [a.getUserId()],
        initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await waitFor("alice's invite", () => a.getRoom(roomId)?.getMyMembership() === "invite");
    await a.joinRoom(roomId);
    // Opening the room in Element Web subscribes to it.
    alice.ss.modifyRoomSubscriptions(new Set([roomId]));
    await waitFor("alice's join in bob's view", () => b.getRoom(roomId)?.getMember(a.getUserId())?.membership === "join");
    await waitFor("encryption in alice's view", () => a.getCrypto().isEncryptionEnabledInRoom(roomId));
    await waitFor("encryption in bob's view", () => b.getCrypto().isEncryptionEnabledInRoom(roomId));

    const { event_id: e1 } = await a.sendMessage(roomId, { msgtype: "m.text", body: "hello bob" });
    assert.equal(await decryptedBody(b, roomId, e1), "hello bob");
    const { event_id: e2 } = await b.sendMessage(roomId, { msgtype: "m.text", body: "hello alice" });
    assert.equal(await decryptedBody(a, roomId, e2), "hello alice");

    // The server only ever saw ciphertext.
    for (const id of [e1, e2]) {
        const raw = await a.fetchRoomEvent(roomId, id);
        assert.equal(raw.type, "m.room.encrypted");
        assert.equal(raw.content.algorithm, "m.megolm.v1.aes-sha2");
    }
});
