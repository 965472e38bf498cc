// The web client in a real browser (Debian's chromium driven by
// playwright-core) against a real `conclave serve` built from this checkout:
// two people register in two browser profiles, start an encrypted DM,
// exchange messages and files both ways and both read them decrypted; a
// reload keeps the session and its keys; replies, edits, reactions,
// deletions, typing and read receipts; a group room's invite, join and
// leave; a second session verified by emoji and a third by recovery key
// read the history. The tests run in order and share the two people. The
// same run takes the screenshots the README shows: into docs/web/ when
// CONCLAVE_UPDATE_SCREENSHOTS=1 (`make screenshots`), else into a temporary
// directory, so that a test run leaves the checkout as it was.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { crc32, deflateSync } from "node:zlib";
import { launchChromium } from "./chromium.mjs";

import { startServer } from "../../tests/js/server.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const updateShots = process.env.CONCLAVE_UPDATE_SCREENSHOTS === "1";
const shots = updateShots ? path.join(repo, "docs/web") : mkdtempSync(path.join(tmpdir(), "conclave-shots-"));
const WAIT = 30000; // failure bound for what arrives through /sync

let server;
let browser;
let a; // Alice's first session
let b; // Bob
let aliceKey; // Alice's recovery key
const pageErrors = [];

before(async () => {
    server = await startServer();
    browser = await launchChromium();
    mkdirSync(shots, { recursive: true });
});

after(async () => {
    await browser?.close();
    await server?.stop();
    if (!updateShots) rmSync(shots, { recursive: true, force: true });
});

async function person(label = "") {
    const context = await browser.newContext({ locale: "en-GB", viewport: { width: 1100, height: 720 } });
    const page = await context.newPage();
    if (process.env.WEB_TEST_LOG && label) {
        // WEB_TEST_LOG=1: the SDK's debug log of the labelled pages.
        await context.addInitScript(() => localStorage.setItem("conclave.debug", "1"));
        page.on("console", (m) => console.log(label, m.text()));
    }
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => pageErrors.push(e));
    return { context, page };
}

async function registerIn(page, name) {
    await page.goto(server.baseUrl + "/");
    await page.getByRole("button", { name: "Create an account" }).click();
    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password", { exact: true }).fill(`correct horse battery ${name}`);
    await page.getByLabel("Confirm password").fill(`correct horse battery ${name}`);
    await page.getByRole("button", { name: "Create account", exact: true }).click();
    // The first session sets up cross-signing and key backup and shows the
    // recovery key once.
    const dialog = page.getByRole("dialog", { name: "Your recovery key" });
    const recoveryKey = (await dialog.getByTestId("recovery-key").textContent()).trim();
    assert.match(recoveryKey, /^(\w{4} ){11}\w{4}$/, "a recovery key in 12 groups of 4");
    if (name === "alice") await page.screenshot({ path: path.join(shots, "recovery-key.png") });
    await dialog.getByRole("button", { name: "I have saved it" }).click();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
    // No display name given: the username is the one others see.
    await page.getByRole("button", { name: "Edit your profile" }).filter({ hasText: new RegExp(`^${name}$`) }).waitFor();
    return recoveryKey;
}

async function signIn(page, name) {
    await page.goto(server.baseUrl + "/");
    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password", { exact: true }).fill(`correct horse battery ${name}`);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
}

const message = (page, text) => page.locator(".timeline .event.message .body > .text", { hasText: text });

// older pages back until a message is loaded.
async function older(page, text) {
    const until = Date.now() + WAIT;
    while (Date.now() < until && (await message(page, text).count()) === 0) {
        // Until the beginning; the message may then still wait for its key.
        const button = page.getByRole("button", { name: "Load older messages" });
        if ((await button.count()) && (await button.isEnabled())) await button.click();
        else await page.waitForTimeout(100);
    }
    await message(page, text).waitFor();
}

// send types text in the composer, presses Enter and waits until the server
// has the event (the "Sending…" mark is gone).
async function send(page, text) {
    await page.getByLabel("Message", { exact: true }).fill(text);
    await page.keyboard.press("Enter");
    await page.locator(".timeline .event.message", { hasText: text }).locator(".status").waitFor({ state: "detached" });
    await message(page, text).waitFor();
}

test("two people talk in an encrypted DM, and a reload keeps working", { timeout: 90000 }, async () => {
    a = await person("a");
    b = await person("b");

    await a.page.goto(server.baseUrl + "/");
    await a.page.getByRole("heading", { name: "Sign in" }).waitFor();
    await a.page.screenshot({ path: path.join(shots, "login.png") });

    aliceKey = await registerIn(a.page, "alice");
    await registerIn(b.page, "bob");
    // Their first sessions are verified: no banner.
    assert.equal(await a.page.locator(".banner:not([hidden])").count(), 0, "first session shows the unverified banner");

    // Alice starts an encrypted DM with Bob and writes first.
    await a.page.getByRole("button", { name: "New message" }).click();
    await a.page.getByLabel(/User ID/).fill("@bob:localhost");
    await a.page.getByRole("button", { name: "Start" }).click();
    await a.page.getByRole("heading", { name: "bob", level: 2, exact: true }).waitFor();
    assert.equal(await a.page.locator(".room-header .enc.on").count(), 1, "the DM is encrypted");
    await send(a.page, "Hello Bob, this is encrypted");

    // Bob accepts the invitation and reads it decrypted.
    await b.page.getByRole("button", { name: "Accept" }).click();
    await message(b.page, "Hello Bob, this is encrypted").waitFor();
    await send(b.page, "Hi Alice, I read you");
    await message(a.page, "Hi Alice, I read you").waitFor();
    // Bob's join counts in the header of Alice's open DM.
    await a.page.locator(".room-header").getByRole("button", { name: "2 members" }).waitFor();
    assert.equal(await a.page.locator(".event.utd").count(), 0, "Alice has undecryptable events");
    assert.equal(await b.page.locator(".event.utd").count(), 0, "Bob has undecryptable events");

    // Bob reloads: same session, keys from IndexedDB, history still decrypts,
    // and new messages flow both ways.
    await b.page.reload();
    await b.page.getByRole("heading", { name: "Conversations" }).waitFor();
    await b.page.locator(".room-item", { hasText: "alice" }).click();
    await message(b.page, "Hello Bob, this is encrypted").waitFor();
    await message(b.page, "Hi Alice, I read you").waitFor();
    await send(b.page, "Still here after a reload");
    await message(a.page, "Still here after a reload").waitFor();
    assert.equal(await b.page.locator(".event.utd").count(), 0, "Bob has undecryptable events after reload");
});

// png encodes a w×h RGB image whose pixels fill(x, y) gives.
function png(w, h, fill) {
    const chunk = (type, data) => {
        const len = Buffer.alloc(4);
        len.writeUInt32BE(data.length);
        const td = Buffer.concat([Buffer.from(type), data]);
        const crc = Buffer.alloc(4);
        crc.writeUInt32BE(crc32(td));
        return Buffer.concat([len, td, crc]);
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(w, 0);
    ihdr.writeUInt32BE(h, 4);
    ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
    const raw = Buffer.alloc((w * 3 + 1) * h);
    for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) raw.set(fill(x, y), y * (w * 3 + 1) + 1 + x * 3);
    }
    const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    return Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}
// Three vertical bands, blue, white and red.
const PNG = png(240, 150, (x) => (x < 80 ? [0, 35, 149] : x < 160 ? [255, 255, 255] : [237, 41, 57]));

test("files, replies, edits, reactions, deletions, typing and read receipts", { timeout: 90000 }, async () => {
    // Files both ways, encrypted: an image with its preview, a text file.
    await a.page.locator("#attach").setInputFiles({ name: "flag.png", mimeType: "image/png", buffer: PNG });
    const img = b.page.locator(".event .attachment img.preview[alt='flag.png']");
    await img.waitFor();
    await b.page.waitForFunction((el) => el.complete && el.naturalWidth === 240, await img.elementHandle());
    await b.page.locator("#attach").setInputFiles({ name: "minutes.txt", mimeType: "text/plain", buffer: Buffer.from("Minutes: all agreed.\n") });
    const link = a.page.locator(".event .attachment a.file", { hasText: "minutes.txt" });
    await a.page.waitForFunction((el) => el.href.startsWith("blob:"), await link.elementHandle());
    const [download] = await Promise.all([a.page.waitForEvent("download"), link.click()]);
    assert.equal(download.suggestedFilename(), "minutes.txt");
    assert.equal(readFileSync(await download.path(), "utf8"), "Minutes: all agreed.\n", "the file decrypts to what Bob sent");

    // Typing: Bob sees Alice typing.
    await a.page.getByLabel("Message", { exact: true }).fill("Let me think");
    await b.page.getByText("alice is typing…").waitFor();
    await a.page.getByLabel("Message", { exact: true }).fill("");

    // Reply.
    const original = a.page.locator(".timeline .event.message", { hasText: "Hi Alice, I read you" });
    await original.hover();
    await original.getByRole("button", { name: "Reply" }).click();
    await a.page.getByText("Replying to bob:").waitFor();
    await send(a.page, "Good to hear");
    await b.page.locator(".event.message", { hasText: "Good to hear" }).locator(".reply-quote", { hasText: "Hi Alice, I read you" }).waitFor();

    // Edit.
    const mine = a.page.locator(".timeline .event.message", { hasText: "Good to hear" });
    await mine.hover();
    await mine.getByRole("button", { name: "Edit" }).click();
    await a.page.getByLabel("Message", { exact: true }).fill("Very good to hear");
    await a.page.keyboard.press("Enter");
    await b.page.locator(".event.message", { hasText: "Very good to hear" }).locator(".edited").waitFor();

    // Reaction, seen by the other side, then taken back.
    const bobsView = b.page.locator(".timeline .event.message", { hasText: "Hello Bob, this is encrypted" });
    await bobsView.hover();
    await bobsView.getByRole("button", { name: "React with 👍" }).click();
    await a.page.locator(".event.message", { hasText: "Hello Bob, this is encrypted" }).getByRole("button", { name: "👍: 1" }).waitFor();
    await bobsView.getByRole("button", { name: "👍: 1" }).click();
    await a.page.locator(".event.message", { hasText: "Hello Bob, this is encrypted" }).locator(".reactions").waitFor({ state: "detached" });

    // Deletion.
    await send(b.page, "Oops, wrong room");
    await message(a.page, "Oops, wrong room").waitFor();
    b.page.once("dialog", (d) => d.accept());
    const oops = b.page.locator(".timeline .event.message", { hasText: "Oops, wrong room" });
    await oops.hover();
    await oops.getByRole("button", { name: "Delete" }).click();
    await message(a.page, "Oops, wrong room").waitFor({ state: "detached" });
    await a.page.locator(".event.redacted").first().waitFor();

    // Read receipts: Bob has the room open, so he has read Alice's last message.
    await send(a.page, "See you on Monday");
    await a.page.locator(".event.message", { hasText: "See you on Monday" }).locator(".receipt", { hasText: "Read by bob" }).waitFor();
    assert.equal(await a.page.locator(".event.utd").count() + (await b.page.locator(".event.utd").count()), 0, "undecryptable events");

    // A notification while Bob's tab is in the background (the page's
    // Notification is replaced by a recorder: headless chromium shows none).
    await b.page.evaluate(() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
        window.__notes = [];
        window.Notification = class {
            static permission = "granted";
            constructor(title, opts) {
                window.__notes.push(`${title}|${opts.body}`);
            }
        };
    });
    await a.page.getByLabel("Message", { exact: true }).fill("Are you there?");
    await a.page.keyboard.press("Enter");
    await b.page.waitForFunction(() => window.__notes.includes("alice|alice: Are you there?"));
    await b.page.evaluate(() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
        document.dispatchEvent(new Event("visibilitychange"));
    });
});

// sendInThread writes in the open thread's composer and waits until the
// server has the event.
async function sendInThread(page, text) {
    await page.getByLabel("Reply in the thread", { exact: true }).fill(text);
    await page.getByLabel("Reply in the thread", { exact: true }).press("Enter");
    const ev = page.locator(".thread-panel .event.message", { hasText: text });
    await ev.locator(".body > .text").waitFor();
    await ev.locator(".status").waitFor({ state: "detached" });
}

test("threads: replies in a thread of the encrypted DM, read decrypted in the thread view", { timeout: 90000 }, async () => {
    // Bob starts a thread on Alice's message and writes six replies: more
    // than the server's first page of /relations (5), so Alice pages back.
    const root = b.page.locator(".room-main .timeline .event.message", { hasText: "See you on Monday" });
    await root.hover();
    await root.getByRole("button", { name: "Thread", exact: true }).click();
    await b.page.getByRole("heading", { name: "Thread", level: 3 }).waitFor();
    for (let i = 1; i <= 6; i++) await sendInThread(b.page, `Thread reply ${i}`);
    await root.getByRole("button", { name: "6 replies" }).waitFor();

    // Alice's timeline shows the root with its count, not the replies.
    const aliceRoot = a.page.locator(".room-main .timeline .event.message", { hasText: "See you on Monday" });
    await aliceRoot.getByRole("button", { name: "6 replies" }).waitFor();
    assert.equal(await a.page.locator(".room-main .timeline .event", { hasText: "Thread reply" }).count(), 0, "thread replies clutter the room's timeline");
    await aliceRoot.getByRole("button", { name: "6 replies" }).click();
    const panel = a.page.locator(".thread-panel");
    await panel.locator(".event.thread-root", { hasText: "See you on Monday" }).waitFor();
    await panel.locator(".event.message .body > .text", { hasText: "Thread reply 6" }).waitFor();
    // Paging back to the first reply.
    const until = Date.now() + WAIT;
    while (Date.now() < until && (await panel.locator(".event.message .body > .text", { hasText: "Thread reply 1" }).count()) === 0) {
        const button = panel.getByRole("button", { name: "Load older replies" });
        if ((await button.count()) && (await button.isEnabled())) await button.click();
        else await a.page.waitForTimeout(100);
    }
    for (let i = 1; i <= 6; i++) await panel.locator(".event.message .body > .text", { hasText: `Thread reply ${i}` }).waitFor();
    await panel.getByText("Beginning of the thread").waitFor();
    assert.equal(await panel.locator(".event.utd").count(), 0, "undecryptable events in the thread");
    // Read: a threaded read receipt clears the thread's count on the server
    // (the 6 replies counted in unread_thread_notifications until then).
    const { accessToken } = JSON.parse(await a.page.evaluate(() => localStorage.getItem("conclave.session")));
    const roomId = await a.page.locator(".room-item.selected").getAttribute("data-room-id");
    const rootId = await aliceRoot.getAttribute("data-event-id");
    const threadCount = async () => {
        const filter = encodeURIComponent(JSON.stringify({ room: { timeline: { limit: 0, unread_thread_notifications: true } } }));
        const r = await fetch(`${server.baseUrl}/_matrix/client/v3/sync?filter=${filter}`, { headers: { Authorization: `Bearer ${accessToken}` } });
        return (await r.json()).rooms.join[roomId].unread_thread_notifications?.[rootId]?.notification_count ?? 0;
    };
    for (const until = Date.now() + WAIT; (await threadCount()) !== 0; ) {
        assert.ok(Date.now() < until, "the thread is still unread on the server after Alice read it");
        await a.page.waitForTimeout(100);
    }

    // Alice answers in the thread; Bob sees it there, and the count grows.
    await sendInThread(a.page, "Noted, thanks");
    await b.page.locator(".thread-panel .event.message", { hasText: "Noted, thanks" }).waitFor();
    await aliceRoot.getByRole("button", { name: "7 replies" }).waitFor();
    await a.page.mouse.move(1, 1); // no message's action bar in the picture
    await a.page.screenshot({ path: path.join(shots, "thread.png") });

    // On the wire: an m.thread relation with the reply fallback to the
    // thread's latest message (Client-Server API, "Threading").
    const res = await fetch(
        `${server.baseUrl}/_matrix/client/v1/rooms/${encodeURIComponent(roomId)}/relations/${encodeURIComponent(rootId)}/m.thread?limit=2`,
        { headers: { Authorization: `Bearer ${accessToken}` } },
    );
    assert.equal(res.status, 200);
    const [newest, before] = (await res.json()).chunk;
    assert.equal(newest.type, "m.room.encrypted", "thread replies are encrypted");
    assert.deepEqual(newest.content["m.relates_to"], {
        rel_type: "m.thread",
        event_id: rootId,
        is_falling_back: true,
        "m.in_reply_to": { event_id: before.event_id },
    });

    // A file in the thread: encrypted, in the thread only.
    await a.page.locator("#thread-attach").setInputFiles({ name: "agenda.txt", mimeType: "text/plain", buffer: Buffer.from("1. Budget\n") });
    const inThread = b.page.locator(".thread-panel .event .attachment a.file", { hasText: "agenda.txt" });
    await b.page.waitForFunction((el) => el.href.startsWith("blob:"), await inThread.elementHandle());
    await aliceRoot.getByRole("button", { name: "8 replies" }).waitFor();
    assert.equal(await a.page.locator(".room-main .timeline .attachment", { hasText: "agenda.txt" }).count(), 0, "a thread's file in the room's timeline");

    // Closed, the room's timeline is whole again.
    await a.page.getByRole("button", { name: "Close the thread" }).click();
    await panel.waitFor({ state: "hidden" });
    await b.page.getByRole("button", { name: "Close the thread" }).click();
});

test("group room: create, invite, join, leave", { timeout: 60000 }, async () => {
    await b.page.getByRole("button", { name: "New room" }).click();
    await b.page.getByLabel("Room name").fill("Cabinet meeting");
    await b.page.getByRole("button", { name: "Create", exact: true }).click();
    await b.page.getByRole("heading", { name: "Cabinet meeting", level: 2 }).waitFor();
    assert.equal(await b.page.locator(".room-header .enc.on").count(), 1, "a private room is encrypted");
    // Invite from the member list.
    await b.page.getByRole("button", { name: "1 members" }).click();
    await b.page.getByLabel(/^Invite someone/).fill("@alice:localhost");
    await b.page.getByRole("button", { name: "Invite", exact: true }).click();
    await b.page.locator(".members li", { hasText: "alice" }).getByText("invited").waitFor();
    await send(b.page, "Agenda for Monday");
    // Alice joins and reads the history sent while she was invited.
    await a.page.getByRole("button", { name: "Accept" }).click();
    await a.page.getByRole("heading", { name: "Cabinet meeting", level: 2 }).waitFor();
    await message(a.page, "Agenda for Monday").waitFor();
    await b.page.locator(".members li", { hasText: "alice" }).getByText("invited").waitFor({ state: "detached" });
    await b.page.getByText("alice joined").waitFor();
    // An unread message in the other room: a badge in Alice's list.
    await a.page.locator(".room-item", { hasText: "bob" }).click();
    await send(b.page, "Please bring the figures");
    await a.page.locator(".room-item", { hasText: "Cabinet meeting" }).locator(".badge").waitFor();
    await a.page.screenshot({ path: path.join(shots, "conversation.png") });
    // Alice reads it, the badge goes; then she leaves, and Bob sees it.
    await a.page.locator(".room-item", { hasText: "Cabinet meeting" }).click();
    await message(a.page, "Please bring the figures").waitFor();
    await a.page.locator(".room-item", { hasText: "Cabinet meeting" }).locator(".badge").waitFor({ state: "detached" });
    await a.page.getByRole("button", { name: "2 members" }).click();
    a.page.once("dialog", (d) => d.accept());
    await a.page.getByRole("button", { name: "Leave the conversation" }).click();
    await a.page.locator(".room-item", { hasText: "Cabinet meeting" }).waitFor({ state: "detached" });
    await b.page.getByText("alice left").waitFor();
    await b.page.getByRole("button", { name: "1 members" }).waitFor();

    // Join by address: a public room with an alias, made over the API by a third user.
    const reg = await (
        await fetch(`${server.baseUrl}/_matrix/client/v3/register`, {
            method: "POST",
            body: JSON.stringify({ username: "carol", password: "correct horse battery carol", auth: { type: "m.login.dummy" } }),
        })
    ).json();
    const created = await fetch(`${server.baseUrl}/_matrix/client/v3/createRoom`, {
        method: "POST",
        headers: { Authorization: `Bearer ${reg.access_token}` },
        body: JSON.stringify({ preset: "public_chat", name: "Lobby", room_alias_name: "lobby" }),
    });
    assert.equal(created.status, 200);
    await a.page.getByRole("button", { name: "Join", exact: true }).click();
    await a.page.getByLabel(/^Room address/).fill("#lobby:localhost");
    await a.page.getByRole("button", { name: "Join", exact: true }).last().click();
    await a.page.getByRole("heading", { name: "Lobby", level: 2 }).waitFor();
    assert.equal(await a.page.locator(".room-header .enc.off").count(), 1, "a public room is not encrypted");

    // A room's picture (m.room.avatar) is shown in the list.
    const { room_id: lobbyId } = await created.clone().json();
    const up = await fetch(`${server.baseUrl}/_matrix/media/v3/upload?filename=lobby.png`, {
        method: "POST",
        headers: { Authorization: `Bearer ${reg.access_token}`, "Content-Type": "image/png" },
        body: PNG,
    });
    assert.equal(up.status, 200);
    const setAvatar = await fetch(`${server.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(lobbyId)}/state/m.room.avatar/`, {
        method: "PUT",
        headers: { Authorization: `Bearer ${reg.access_token}` },
        body: JSON.stringify({ url: (await up.json()).content_uri }),
    });
    assert.equal(setAvatar.status, 200);
    await a.page.locator(".room-item", { hasText: "Lobby" }).locator(".avatar img").waitFor();

    // Threads: a reply in a thread is not in the room's timeline; its root
    // shows the count.
    const { room_id } = await created.json();
    const put = async (txn, content) => {
        const r = await fetch(`${server.baseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(room_id)}/send/m.room.message/${txn}`, {
            method: "PUT",
            headers: { Authorization: `Bearer ${reg.access_token}` },
            body: JSON.stringify(content),
        });
        assert.equal(r.status, 200);
        return (await r.json()).event_id;
    };
    const root = await put("t1", { msgtype: "m.text", body: "Welcome to the lobby" });
    await put("t2", { msgtype: "m.text", body: "A reply in a thread", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    await a.page.locator(".event.message", { hasText: "Welcome to the lobby" }).getByRole("button", { name: "1 reply" }).waitFor();
    assert.equal(await a.page.locator(".room-main .timeline .event", { hasText: "A reply in a thread" }).count(), 0, "a thread reply in the room's timeline");
});

test("profile: display name and picture, seen by the other side", { timeout: 60000 }, async () => {
    // Bob's page fetches the picture's thumbnail from the authenticated media
    // API with his access token (an <img src> could not send it).
    const thumbnail = b.page.waitForRequest((r) => r.url().includes("/_matrix/client/v1/media/thumbnail/") && /^Bearer /.test(r.headers().authorization ?? ""));
    await a.page.getByRole("button", { name: "Edit your profile" }).click();
    await a.page.getByLabel("Display name").fill("Alice Martin");
    await a.page.getByLabel("Picture").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: PNG });
    await a.page.getByRole("button", { name: "Save" }).click();
    await a.page.getByRole("button", { name: "Edit your profile" }).filter({ hasText: "Alice Martin" }).waitFor();
    await a.page.locator(".me .avatar img").waitFor();
    await a.page.locator(".room-item", { hasText: "bob" }).click();
    await b.page.locator(".room-item", { hasText: /alice/i }).click();
    await send(a.page, "New name, new picture");
    const seen = b.page.locator(".event.message", { hasText: "New name, new picture" });
    await seen.locator(".sender", { hasText: "Alice Martin" }).waitFor();
    await seen.locator(".avatar img").waitFor();
    await thumbnail;
    // The DM in Bob's list shows Alice's picture.
    await b.page.locator(".room-item", { hasText: "Alice Martin" }).locator(".avatar img").waitFor();
    // Without a picture: Bob's initial, on the colour of his ID, the same in
    // Alice's list and beside his messages.
    const inList = a.page.locator(".room-item", { hasText: "bob" }).locator(".avatar");
    assert.equal((await inList.textContent()).trim(), "B");
    const colour = (await inList.getAttribute("class")).match(/\bav\d\b/)?.[0];
    assert.ok(colour, "an initial has a colour class");
    const besideMessage = a.page.locator(".room-main .event.message", { hasText: "Still here after a reload" }).locator(".sender .avatar");
    assert.match(await besideMessage.getAttribute("class"), new RegExp(`\\b${colour}\\b`), "Bob's colour differs between the list and the timeline");
});

test("a second session is verified by emoji, a third with the recovery key; both read the history", { timeout: 90000 }, async () => {
    // Room keys come from key backup, whose key the first session sends once
    // the new one is verified.
    const a2 = await person("a2");
    await signIn(a2.page, "alice");
    await a2.page.getByText("This session is not verified").waitFor();
    await a2.page.getByRole("button", { name: "Verify with another session" }).click();
    const incoming = a.page.getByRole("dialog", { name: "Verification request" });
    await incoming.getByRole("button", { name: "Accept" }).click();
    const sas1 = a.page.getByRole("dialog", { name: "Verify the session" });
    const sas2 = a2.page.getByRole("dialog", { name: "Verify the session" });
    const emoji1 = sas1.getByRole("list", { name: "Emoji to compare" });
    const emoji2 = sas2.getByRole("list", { name: "Emoji to compare" });
    await emoji1.waitFor();
    await emoji2.waitFor();
    const shown1 = await emoji1.textContent();
    assert.equal(await emoji1.locator("li").count(), 7, "seven emoji");
    assert.equal(shown1, await emoji2.textContent(), "both sessions show the same emoji");
    await a2.page.screenshot({ path: path.join(shots, "verification.png") });
    await sas2.getByRole("button", { name: "They match" }).click();
    await sas1.getByRole("button", { name: "They match" }).click();
    await sas1.getByText("Session verified.").waitFor();
    await sas2.getByText("Session verified.").waitFor();
    await sas1.getByRole("button", { name: "Close" }).click();
    await sas2.getByRole("button", { name: "Close" }).click();
    await a2.page.locator(".banner").waitFor({ state: "hidden" });
    await a2.page.locator(".room-item", { hasText: "bob" }).click();
    await older(a2.page, "Hello Bob, this is encrypted");
    await message(a2.page, "Hi Alice, I read you").waitFor();
    await a2.page.locator(".attachment img.preview[alt='flag.png']").waitFor();

    // A third session uses the recovery key instead; a wrong one is refused.
    const a3 = await person("a3");
    await signIn(a3.page, "alice");
    await a3.page.getByRole("button", { name: "Use the recovery key" }).click();
    const rk = a3.page.getByRole("dialog", { name: "Use the recovery key" });
    await rk.getByLabel("Recovery key").fill("EsTc aaaa bbbb cccc dddd eeee ffff gggg hhhh iiii jjjj kkkk");
    await rk.getByRole("button", { name: "Verify" }).click();
    await rk.getByText("This is not the recovery key").waitFor();
    await rk.getByLabel("Recovery key").fill(aliceKey);
    await rk.getByRole("button", { name: "Verify" }).click();
    await a3.page.locator(".banner").waitFor({ state: "hidden" });
    await a3.page.locator(".room-item", { hasText: "bob" }).click();
    await older(a3.page, "Hello Bob, this is encrypted");
    await message(a3.page, "Still here after a reload").waitFor();
    await a2.context.close();
    await a3.context.close();
});

test("phone-sized screen, French, sign out", { timeout: 60000 }, async () => {
    await a.page.setViewportSize({ width: 390, height: 760 });
    await a.page.getByRole("button", { name: "Back to conversations" }).click();
    await b.page.locator(".room-item", { hasText: "Alice Martin" }).click();
    await send(b.page, "One more thing");
    await a.page.getByRole("heading", { name: "Conversations" }).waitFor();
    await a.page.locator(".room-item", { hasText: "bob" }).locator(".badge").waitFor();
    await a.page.screenshot({ path: path.join(shots, "rooms.png") });
    await a.page.locator(".room-item", { hasText: "bob" }).click();
    await message(a.page, "One more thing").waitFor();
    await a.page.screenshot({ path: path.join(shots, "phone-conversation.png") });
    // A thread takes the whole screen.
    await a.page.locator(".room-main .event.message", { hasText: "See you on Monday" }).getByRole("button", { name: "8 replies" }).click();
    await a.page.locator(".thread-panel .event.message", { hasText: "Noted, thanks" }).waitFor();
    const box = await a.page.locator(".thread-panel").boundingBox();
    assert.ok(box.x === 0 && box.width === 390, `the thread covers the phone's screen: ${JSON.stringify(box)}`);
    await a.page.getByRole("button", { name: "Close the thread" }).click();
    await a.page.getByRole("button", { name: "Back to conversations" }).click();

    // The language switch: French, kept across a reload.
    await a.page.getByLabel("Language").selectOption("fr");
    await a.page.getByRole("button", { name: "Nouveau message" }).waitFor();
    await a.page.reload();
    // Signing out revokes the blob: URLs of the pictures.
    const picture = await a.page.locator(".me .avatar img").getAttribute("src");
    assert.match(picture, /^blob:/);
    // (Loaded as an image: the page's CSP allows blob: for img-src only.)
    const readable = (u) =>
        a.page.evaluate(
            (u) =>
                new Promise((resolve) => {
                    const img = new Image();
                    img.onload = () => resolve(true);
                    img.onerror = () => resolve(false);
                    img.src = u;
                }),
            u,
        );
    assert.equal(await readable(picture), true);
    await a.page.getByRole("button", { name: "Se déconnecter" }).click();
    await a.page.getByRole("heading", { name: "Se connecter" }).waitFor();
    assert.equal(await readable(picture), false, "a picture's blob: URL outlives the session");
    await a.page.reload();
    await a.page.getByRole("heading", { name: "Se connecter" }).waitFor();

    await a.context.close();
    await b.context.close();
    assert.deepEqual(pageErrors.map(String), [], "uncaught errors in the pages");
});
