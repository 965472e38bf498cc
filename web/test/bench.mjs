// Budgets of the web client (docs/benchmarks.md), measured in Debian's
// chromium against a real `conclave serve`: first screen interactive from a
// cold cache, JavaScript size, and switching rooms with 500 rooms (half of
// them with a picture).
// Run with `npm run bench` in web/ (a minute or two: it creates the rooms).
import { gzipSync } from "node:zlib";
import { launchChromium } from "./chromium.mjs";
import { startServer } from "../../tests/js/server.mjs";

const ROOMS = Number(process.env.ROOMS ?? 500);
const server = await startServer();
const browser = await launchChromium();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
    // First screen, cold: a fresh profile each time (empty HTTP cache).
    const firsts = [];
    let jsBytes = 0;
    for (let i = 0; i < 5; i++) {
        const ctx = await browser.newContext();
        const page = await ctx.newPage();
        const js = [];
        page.on("response", async (r) => {
            if (r.url().endsWith(".js")) js.push(await r.body());
        });
        await page.goto(server.baseUrl + "/");
        await page.getByLabel("Username").waitFor();
        firsts.push(await page.evaluate(() => performance.getEntriesByName("conclave-interactive")[0].startTime));
        jsBytes = js.reduce((n, b) => n + gzipSync(b, { level: 9 }).length, 0);
        await ctx.close();
    }
    console.log(`first screen interactive, cold cache: median ${median(firsts).toFixed(0)} ms, max ${Math.max(...firsts).toFixed(0)} ms (budget 1000)`);
    console.log(`JavaScript loaded for it: ${(jsBytes / 1024).toFixed(0)} KB gzipped (budget 600)`);

    // A user with ROOMS rooms, made over the API.
    const reg = await (
        await fetch(`${server.baseUrl}/_matrix/client/v3/register`, {
            method: "POST",
            body: JSON.stringify({ username: "busy", password: "busy busy busy", auth: { type: "m.login.dummy" } }),
        })
    ).json();
    const auth = { Authorization: `Bearer ${reg.access_token}` };
    // Every other room has a picture (m.room.avatar): the list draws them.
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");
    const up = await fetch(`${server.baseUrl}/_matrix/media/v3/upload?filename=room.png`, {
        method: "POST",
        headers: { ...auth, "Content-Type": "image/png" },
        body: png,
    });
    if (!up.ok) throw new Error(`upload ${up.status}`);
    const avatar = { type: "m.room.avatar", state_key: "", content: { url: (await up.json()).content_uri } };
    const t0 = Date.now();
    for (let i = 0; i < ROOMS; i += 10) {
        await Promise.all(
            Array.from({ length: Math.min(10, ROOMS - i) }, (_, j) =>
                fetch(`${server.baseUrl}/_matrix/client/v3/createRoom`, {
                    method: "POST",
                    headers: auth,
                    body: JSON.stringify({ name: `Room ${i + j}`, preset: "public_chat", initial_state: (i + j) % 2 ? [] : [avatar] }),
                }).then((r) => (r.ok ? r.json() : Promise.reject(new Error(`createRoom ${r.status}`)))),
            ),
        );
    }
    console.log(`(${ROOMS} rooms created in ${((Date.now() - t0) / 1000).toFixed(0)} s)`);

    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(server.baseUrl + "/");
    await page.getByLabel("Username").fill("busy");
    await page.getByLabel("Password", { exact: true }).fill("busy busy busy");
    const s0 = Date.now();
    await page.getByRole("button", { name: "Sign in", exact: true }).click();
    await page.locator(".room-item").nth(ROOMS - 1).waitFor({ timeout: 120000 });
    console.log(`sign-in to a list of ${ROOMS} rooms: ${Date.now() - s0} ms`);
    await page.getByRole("button", { name: "I have saved it" }).click().catch(() => {});
    await page.locator(".room-item .avatar img").first().waitFor();
    console.log(`(room pictures drawn in the list: ${await page.locator(".room-item .avatar img").count()}, fetched when on screen)`);

    // Room switch: click to the conversation drawn (next frame), in the page.
    const switches = await page.evaluate(async (n) => {
        const out = [];
        for (let i = 0; i < n; i++) {
            const items = document.querySelectorAll(".room-item");
            const button = items[(i * 37) % items.length];
            const t = performance.now();
            button.click();
            await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
            out.push(performance.now() - t);
        }
        return out;
    }, 40);
    console.log(`room switch with ${ROOMS} rooms: median ${median(switches).toFixed(1)} ms, max ${Math.max(...switches).toFixed(1)} ms (budget 100)`);

    // Reload signed in: to the room list.
    const r0 = Date.now();
    await page.reload();
    await page.locator(".room-item").nth(ROOMS - 1).waitFor({ timeout: 120000 });
    console.log(`reload to the list of ${ROOMS} rooms: ${Date.now() - r0} ms`);
    await ctx.close();
} finally {
    await browser.close();
    await server.stop();
}
