// Single sign-on in the browser: a real OpenID Connect provider
// (internal/sso/ssotest/cmd/ssoprovider, zitadel/oidc) and a conclave that
// takes no password (--password-login=false). Alice signs in with the
// provider's button (no password form shown), is shown her recovery key
// (cross-signing and key backup set up; the first upload of cross-signing
// keys needs no user-interactive auth), reaches her conversations, and a
// reload keeps her session. A new session of hers, with neither another
// session to verify with nor the recovery key, resets her secure identity:
// replacing cross-signing keys asks for her again, which an SSO-only user
// does on the server's m.login.sso fallback page, opened by the client in a
// popup window (and from a button where the browser blocks the popup). The
// tests run in order and share Alice.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { launchChromium } from "./chromium.mjs";

import { freePort, startServer } from "../../tests/js/server.mjs";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WAIT = 30000;
const IDP = "Example ID";

let dir;
let provider;
let server;
let browser;
let firstKey;
const pageErrors = [];

// startProvider builds and runs the test provider, which prints its issuer
// and client credentials as one JSON line.
async function startProvider(redirectURI) {
    dir = mkdtempSync(path.join(tmpdir(), "conclave-sso-"));
    const bin = path.join(dir, "ssoprovider");
    execFileSync(process.env.GO ?? "go", ["build", "-o", bin, "./internal/sso/ssotest/cmd/ssoprovider"], { cwd: repo, stdio: "inherit" });
    // Standard input is a pipe: the provider exits when this process does.
    const proc = spawn(bin, ["-redirect-uri", redirectURI, "-subject", "alice-0001", "-email", "alice@example.org", "-name", "Alice"], {
        stdio: ["pipe", "pipe", "inherit"],
    });
    const line = await new Promise((resolve, reject) => {
        proc.once("exit", (code) => reject(new Error(`ssoprovider exited with ${code}`)));
        createInterface({ input: proc.stdout }).once("line", resolve);
    });
    return { proc, ...JSON.parse(line) };
}

before(async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    provider = await startProvider(base + "/_synapse/client/oidc/callback");
    server = await startServer(
        [
            "--public-base-url", base,
            "--oidc-issuer", provider.issuer,
            "--oidc-client-id", provider.client_id,
            "--oidc-client-secret", provider.client_secret,
            "--oidc-provider-name", IDP,
            "--password-login=false",
        ],
        { port },
    );
    browser = await launchChromium();
});

after(async () => {
    await browser?.close();
    await server?.stop();
    provider?.proc.kill("SIGTERM");
    if (dir) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(pageErrors.map(String), [], "no page threw");
});

// until polls cond (every 50 ms, for at most WAIT).
async function until(cond) {
    const end = Date.now() + WAIT;
    while (!(await cond())) {
        if (Date.now() > end) throw new Error("timed out");
        await new Promise((r) => setTimeout(r, 50));
    }
}

async function newPage() {
    const context = await browser.newContext({ locale: "en-GB" });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on("pageerror", (e) => pageErrors.push(e));
    if (process.env.WEB_TEST_LOG) page.on("console", (m) => console.log("page:", m.text()));
    return { context, page };
}

async function ssoSignIn(page) {
    await page.goto(server.baseUrl + "/");
    const button = page.getByRole("button", { name: `Sign in with ${IDP}` });
    await button.click();
    // To the provider (which signs Alice in at once), back through the
    // server's callback to the client with a loginToken.
    await page.waitForURL((u) => u.origin === server.baseUrl && u.pathname === "/");
}

test("sign in with single sign-on: recovery key, conversations, reload", { timeout: 60000 }, async () => {
    const { context, page } = await newPage();
    await page.goto(server.baseUrl + "/");
    await page.getByRole("button", { name: `Sign in with ${IDP}` }).waitFor();
    // The server takes no password: no password form.
    assert.equal(await page.getByLabel("Password", { exact: true }).isVisible(), false);
    assert.equal(await page.getByRole("button", { name: "Create an account" }).isVisible(), false);
    await ssoSignIn(page);
    const dialog = page.getByRole("dialog", { name: "Your recovery key" });
    firstKey = (await dialog.getByTestId("recovery-key").textContent()).trim();
    assert.match(firstKey, /^(\w{4} ){11}\w{4}$/);
    // The login token is gone from the address bar.
    assert.equal(new URL(page.url()).search, "");
    await dialog.getByRole("button", { name: "I have saved it" }).click();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
    // This session made the cross-signing keys: it is verified.
    await page.getByText("This session is not verified").waitFor({ state: "hidden" });

    await page.reload();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
    assert.equal(await page.getByRole("button", { name: `Sign in with ${IDP}` }).count(), 0);
    await context.close();
});

// reset runs "Lost your recovery key? Reset" in a new session of Alice's
// and confirms it in the fallback popup; blocked: the page's first
// window.open returns null, as where the browser blocks popups. It
// returns the new recovery key.
async function reset(blocked) {
    const { context, page } = await newPage();
    if (blocked) {
        await page.addInitScript(() => {
            const open = window.open.bind(window);
            let first = true;
            window.open = (...args) => (first ? ((first = false), null) : open(...args));
        });
    }
    const popups = [];
    context.on("page", (p) => popups.push(p));
    await ssoSignIn(page);
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
    // Her keys exist: this new session is asked to verify itself.
    await page.getByText("This session is not verified").waitFor();
    await page.getByRole("button", { name: "Use the recovery key" }).click();
    await page.getByRole("button", { name: "Lost your recovery key? Reset" }).click();
    await page.getByRole("dialog", { name: "Reset your secure identity?" }).getByRole("button", { name: "Reset" }).click();
    // Replacing her cross-signing keys asks for her again, and the server
    // offers m.login.sso only.
    const uia = page.getByRole("dialog", { name: "Confirm it’s you" });
    await uia.waitFor();
    // The window opens at once, or (the browser blocking it) from the
    // button: the browser may also block it when the click that started
    // the reset is a few seconds old (a loaded machine).
    const blockedText = uia.getByText("did not open");
    await until(async () => popups.length > 0 || (await blockedText.isVisible()));
    if (blocked) assert.equal(popups.length, 0, "no window while blocked");
    if (popups.length === 0) {
        await uia.getByRole("button", { name: "Open the confirmation window" }).click();
        await until(() => popups.length > 0);
    }
    const popup = popups[0];
    popup.setDefaultTimeout(WAIT);
    await popup.waitForURL(/\/_matrix\/client\/v3\/auth\/m\.login\.sso\/fallback\/web\?session=/);
    await popup.getByRole("link", { name: `Continue with ${IDP}` }).click();
    // Provider, callback, "Action confirmed" (which posts "authDone" to the
    // client): the client sends the upload again, closes the window, and
    // shows the new recovery key.
    const dialog = page.getByRole("dialog", { name: "Your recovery key" });
    const key = (await dialog.getByTestId("recovery-key").textContent()).trim();
    assert.match(key, /^(\w{4} ){11}\w{4}$/);
    assert.ok(popup.isClosed(), "the client closed the window");
    await dialog.getByRole("button", { name: "I have saved it" }).click();
    // The new identity is this session's: it is verified.
    await page.getByText("This session is not verified").waitFor({ state: "hidden" });
    await context.close();
    return key;
}

test("an SSO-only user confirms a reset of her secure identity in the fallback popup", { timeout: 60000 }, async () => {
    const key = await reset(false);
    assert.notEqual(key, firstKey, "a new recovery key");
    firstKey = key;
});

test("where the browser blocks the popup, the confirmation window opens from a button", { timeout: 60000 }, async () => {
    const key = await reset(true);
    assert.notEqual(key, firstKey, "a new recovery key");
});

// The Sessions panel for an account without a password: signing the other
// sessions out is confirmed at the provider in the fallback popup, and the
// signed-out session is back at the sign-in screen.
test("an SSO-only user signs her other sessions out, confirming in the fallback popup", { timeout: 60000 }, async () => {
    const x = await newPage();
    const y = await newPage();
    const popups = [];
    x.context.on("page", (p) => popups.push(p));
    await ssoSignIn(x.page);
    await ssoSignIn(y.page);
    await Promise.all([x.page, y.page].map((p) => p.getByRole("heading", { name: "Conversations" }).waitFor()));
    const mine = await x.page.evaluate(() => JSON.parse(localStorage.getItem("conclave.session")).deviceId);
    await x.page.getByRole("button", { name: "Sessions", exact: true }).click();
    const panel = x.page.getByRole("region", { name: "Sessions" });
    const items = panel.locator("li.session");
    // This one, y, and those the earlier tests left signed in.
    await items.nth(1).waitFor();
    await panel.getByRole("button", { name: "Sign out all other sessions" }).click();
    await x.page.getByRole("dialog", { name: "Sign out all other sessions?" }).getByRole("button", { name: "Sign out", exact: true }).click();
    const uia = x.page.getByRole("dialog", { name: "Confirm it’s you" });
    await uia.waitFor();
    // No password to ask for: the provider, in the popup (or from the
    // button, where the browser blocked it).
    assert.equal(await uia.getByLabel("Password").count(), 0);
    const blockedText = uia.getByText("did not open");
    await until(async () => popups.length > 0 || (await blockedText.isVisible()));
    if (popups.length === 0) {
        await uia.getByRole("button", { name: "Open the confirmation window" }).click();
        await until(() => popups.length > 0);
    }
    popups[0].setDefaultTimeout(WAIT);
    await popups[0].getByRole("link", { name: `Continue with ${IDP}` }).click();
    await uia.waitFor({ state: "detached" });
    await until(async () => (await items.count()) === 1);
    assert.equal(await items.first().getAttribute("data-device-id"), mine);
    await y.page.getByRole("heading", { name: "Sign in", exact: true }).waitFor();
    await y.page.getByRole("alert").filter({ hasText: "This session was signed out" }).waitFor();
    await x.context.close();
    await y.context.close();
});
