// Registration with a registration token (Client-Server API,
// "Token-authenticated registration") in the browser, against a server whose
// open registration is off: without a token and with a wrong one the page
// says why; with the right one the account is made.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { launchChromium } from "./chromium.mjs";

import { startServer } from "../../tests/js/server.mjs";

let server;
let browser;

before(async () => {
    server = await startServer(["--enable-registration=false", "--registration-tokens=invite-2026"]);
    browser = await launchChromium();
});

after(async () => {
    await browser?.close();
    await server?.stop();
});

test("registration needs the server's token", { timeout: 60000 }, async () => {
    const context = await browser.newContext({ locale: "en-GB" });
    const page = await context.newPage();
    page.setDefaultTimeout(30000);
    await page.goto(server.baseUrl + "/");
    await page.getByRole("button", { name: "Create an account" }).click();
    await page.getByLabel("Username").fill("dana");
    await page.getByLabel("Password", { exact: true }).fill("correct horse battery dana");
    await page.getByLabel("Confirm password").fill("correct horse battery dana");
    const submit = page.getByRole("button", { name: "Create account", exact: true });
    await submit.click();
    await page.getByRole("alert").filter({ hasText: "needs a registration token" }).waitFor();
    await page.getByLabel(/^Registration token/).fill("not-the-token");
    await submit.click();
    await page.getByRole("alert").filter({ hasText: "registration token is not valid" }).waitFor();
    await page.getByLabel(/^Registration token/).fill("invite-2026");
    // The display name given at registration is the one others see.
    await page.getByLabel("Display name").fill("Dora Lefèvre");
    await submit.click();
    await page.getByRole("dialog", { name: "Your recovery key" }).getByRole("button", { name: "I have saved it" }).click();
    await page.getByRole("heading", { name: "Conversations" }).waitFor();
    await page.getByRole("button", { name: "Edit your profile" }).filter({ hasText: "Dora Lefèvre" }).waitFor();
    const { userId } = JSON.parse(await page.evaluate(() => localStorage.getItem("conclave.session")));
    const profile = await (await fetch(`${server.baseUrl}/_matrix/client/v3/profile/${encodeURIComponent(userId)}`)).json();
    assert.equal(profile.displayname, "Dora Lefèvre");
    await context.close();
});
