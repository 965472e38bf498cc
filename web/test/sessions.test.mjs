// The Sessions panel in a real browser (Debian's chromium driven by
// playwright-core) against a real `conclave serve`: one person signed in
// three times (three browser profiles). Her first session lists all three,
// itself first as "This session"; renames another (the server's GET
// /devices has the new name); signs it out, confirming with her password
// (a wrong one first is asked again); that session notices (its token is
// revoked: M_UNKNOWN_TOKEN) and is back at the sign-in screen with nothing
// of it left in the browser; then "sign out all other sessions" signs out
// the third while its page is closed (it finds out when it is opened
// again), and her list holds only this session.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchChromium } from "./chromium.mjs";

import { startServer } from "../../tests/js/server.mjs";

const WAIT = 20000; // failure bound for what arrives through /sync
const PASSWORD = "correct horse battery minister";

let server;
let browser;
const pageErrors = [];

before(async () => {
    server = await startServer();
    browser = await launchChromium();
});

after(async () => {
    await browser?.close();
    await server?.stop();
    assert.deepEqual(pageErrors.map(String), [], "no page threw");
});

// A phone-sized screen: the panel must work there.
async function person() {
    const context = await browser.newContext({ locale: "en-GB", viewport: { width: 390, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => pageErrors.push(e));
    return page;
}

const databases = (page) => page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name));
const session = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("conclave.session") ?? "null"));

async function register(page, name) {
    await page.goto(server.baseUrl + "/");
    await page.getByRole("button", { name: "Create an account" }).click();
    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByLabel("Confirm password").fill(PASSWORD);
    await page.getByRole("button", { name: "Create account", exact: true }).click();
    await page.getByRole("dialog", { name: "Your recovery key" }).getByRole("button", { name: "I have saved it" }).click();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
}

async function signIn(page, name) {
    await page.goto(server.baseUrl + "/");
    await page.getByLabel("Username").fill(name);
    await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
}

// signedOut waits for page to be back at the sign-in screen, told why, with
// its session gone from the browser.
async function signedOut(page) {
    await page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
    await page.getByRole("alert").filter({ hasText: "This session was signed out" }).waitFor();
    assert.equal(await session(page), null, "the signed-out session is forgotten");
    assert.deepEqual(await databases(page), [], "its crypto store is deleted");
}

// confirmWithPassword confirms the sign-out and answers the password prompt.
async function confirmWithPassword(page) {
    await page.getByRole("dialog", { name: /^Sign out/ }).getByRole("button", { name: "Sign out", exact: true }).click();
    const prompt = page.getByRole("dialog", { name: "Confirm it’s you" });
    await prompt.getByLabel("Password").fill("not the password");
    await prompt.getByRole("button", { name: "Continue" }).click();
    await prompt.getByRole("alert").filter({ hasText: "Wrong password." }).waitFor();
    await prompt.getByLabel("Password").fill(PASSWORD);
    await prompt.getByRole("button", { name: "Continue" }).click();
    await prompt.waitFor({ state: "detached" });
}

test("see where the account is signed in, rename a session, sign out one and all others", { timeout: 60000 }, async () => {
    const a = await person();
    const b = await person();
    const c = await person();
    await register(a, "minister");
    await Promise.all([signIn(b, "minister"), signIn(c, "minister")]);
    const [sa, sb, sc] = await Promise.all([session(a), session(b), session(c)]);
    assert.ok((await databases(b)).some((n) => n.includes("crypto")), "a session has its crypto store");

    await a.getByRole("button", { name: "Sessions", exact: true }).click();
    const panel = a.getByRole("region", { name: "Sessions" });
    const items = panel.locator("li.session");
    await items.nth(2).waitFor();
    assert.equal(await items.count(), 3);
    // This session first, marked, verified (it set up cross-signing); the
    // others are not verified; when and where each was last seen.
    const mine = items.first();
    assert.equal(await mine.getAttribute("data-device-id"), sa.deviceId);
    await mine.getByText("This session").waitFor();
    await mine.getByText("Verified", { exact: true }).waitFor();
    await mine.getByText(`Session ID: ${sa.deviceId}`).waitFor();
    await mine.getByText(/^Last seen .* from 127\.0\.0\.1$/).waitFor();
    assert.equal(await mine.getByRole("button", { name: /^Sign out/ }).count(), 0, "no sign-out button for this session");
    const bItem = panel.locator(`li.session[data-device-id="${sb.deviceId}"]`);
    await bItem.getByText("Not verified", { exact: true }).waitFor();
    assert.equal(await bItem.locator(".tag").count(), 0);

    // Rename B; the server has the name.
    await bItem.getByRole("button", { name: /^Rename / }).click();
    await bItem.getByLabel("Session name").fill("Stolen phone");
    await bItem.getByRole("button", { name: "Save" }).click();
    await bItem.locator(".name", { hasText: "Stolen phone" }).waitFor();
    const res = await fetch(`${server.baseUrl}/_matrix/client/v3/devices`, { headers: { Authorization: `Bearer ${sa.accessToken}` } });
    const { devices } = await res.json();
    assert.equal(devices.find((d) => d.device_id === sb.deviceId)?.display_name, "Stolen phone");

    // Sign B out with the password; B notices and is back at sign-in.
    await bItem.getByRole("button", { name: "Sign out Stolen phone" }).click();
    await confirmWithPassword(a);
    await bItem.waitFor({ state: "detached" });
    assert.equal(await items.count(), 2);
    await signedOut(b);

    // All others: C goes too, while its page is closed; only this session
    // stays. C finds out when it comes back.
    await c.goto("about:blank");
    await panel.getByRole("button", { name: "Sign out all other sessions" }).click();
    await confirmWithPassword(a);
    await panel.locator(`li.session[data-device-id="${sc.deviceId}"]`).waitFor({ state: "detached" });
    assert.equal(await items.count(), 1);
    assert.equal(await panel.getByRole("button", { name: "Sign out all other sessions" }).isVisible(), false);
    await c.goto(server.baseUrl + "/");
    await signedOut(c);
    // A is still signed in and working.
    await a.getByRole("heading", { name: "Conversations" }).waitFor();
    assert.equal((await session(a))?.deviceId, sa.deviceId);
});
