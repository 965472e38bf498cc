// User-interactive authentication (Client-Server API, "User-Interactive
// Authentication API"): requests such as publishing new cross-signing keys
// ask the user to prove who they are again. With the password typed at
// sign-in on this page, the client answers m.login.password itself, and
// asks for a password it does not hold in a dialog; for single sign-on
// (m.login.sso) it opens the server's fallback page (the spec's "Fallback")
// in a popup window, waits for the page's postMessage("authDone") or for the
// window to close, and sends the request again with the session alone.
import { MatrixError } from "matrix-js-sdk";
import type { AuthDict } from "matrix-js-sdk/lib/interactive-auth.js";
import { h } from "./dom";
import { t } from "./i18n";
import { baseUrl } from "./matrix";

// SignIn says how this session was just signed in on this page: password
// is the one typed (null after single sign-on). main.ts passes it once,
// after a sign-in or registration; a reload has none.
export interface SignIn {
    password: string | null;
}

export class UIAError extends Error {}

type Challenge = { flows?: { stages?: string[] }[]; session?: string; completed?: string[] };

function challenge(e: unknown): Challenge | null {
    if (!(e instanceof MatrixError) || e.httpStatus !== 401) return null;
    const data = e.data as Challenge | undefined;
    return data && Array.isArray(data.flows) ? data : null;
}

// The fallback is opened at most this many times for one request (the user
// closing the window without confirming, then opening it again).
const MAX_ATTEMPTS = 5;

// interactiveAuth runs makeRequest (the SDK's UIA callback argument) first
// without auth, as servers need none for some requests (the first upload of
// cross-signing keys), then completes the stage the server offers.
export async function interactiveAuth<T>(makeRequest: (auth: AuthDict | null) => Promise<T>, userId: string, password: string | null): Promise<T> {
    let c: Challenge | null;
    try {
        return await makeRequest(null);
    } catch (e) {
        c = challenge(e);
        if (!c) throw e;
    }
    const single = (stage: string) => c!.flows!.some((f) => f.stages?.length === 1 && f.stages[0] === stage);
    const session = c.session;
    if (password !== null && single("m.login.password")) {
        return await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password, session });
    }
    // A password this page does not hold (a reload, or an action that asks
    // for it again on purpose): asked for here. The server offers the stage
    // only to accounts that have a password; one that also offers single
    // sign-on gets a button for it.
    if (single("m.login.password") && session) {
        const r = await passwordPrompt(makeRequest, userId, session, single("m.login.sso"));
        if (r !== USE_SSO) return r;
    }
    // A stage the server's fallback page can do; single sign-on first (an
    // SSO user may have no password).
    const stage = single("m.login.sso") ? "m.login.sso" : "";
    if (!stage || !session) throw new UIAError(t("uiaNoFlow"));
    const popup = new FallbackPopup(stage, session);
    try {
        for (let attempt = 1; ; attempt++) {
            await popup.done();
            try {
                return await makeRequest({ session } as AuthDict);
            } catch (e) {
                // Still a challenge for the same session: the window was
                // closed before the confirmation; offer it again.
                const again = challenge(e);
                if (!again || again.session !== session || attempt >= MAX_ATTEMPTS) throw e;
                popup.notDone();
            }
        }
    } finally {
        popup.close();
    }
}

const USE_SSO = Symbol("sso");

// passwordPrompt asks for the password in a dialog and sends the request
// with it; a wrong one (the same session challenged again) is asked for
// again, at most MAX_ATTEMPTS times. It resolves to USE_SSO when the user
// chooses single sign-on instead.
function passwordPrompt<T>(makeRequest: (auth: AuthDict | null) => Promise<T>, userId: string, session: string, sso: boolean): Promise<T | typeof USE_SSO> {
    return new Promise((resolve, reject) => {
        const input = h("input", { id: "uia-password", name: "password", type: "password", autocomplete: "current-password", required: true });
        const status = h("p", { className: "error", role: "alert" });
        const submit = h("button", { type: "submit", className: "primary" }, t("uiaContinue"));
        const d = h("dialog", { "aria-labelledby": "uia-title", "data-testid": "uia" });
        const end = (then: () => void) => {
            if (d.open) d.close();
            d.remove();
            then();
        };
        const cancel = () => end(() => reject(new UIAError(t("uiaCancelled"))));
        let attempts = 0;
        d.addEventListener("cancel", (e) => (e.preventDefault(), cancel()));
        d.append(
            h(
                "form",
                {
                    onsubmit: async (e: Event) => {
                        e.preventDefault();
                        submit.disabled = true;
                        status.textContent = "";
                        try {
                            const r = await makeRequest({ type: "m.login.password", identifier: { type: "m.id.user", user: userId }, password: input.value, session });
                            end(() => resolve(r));
                        } catch (err) {
                            const again = challenge(err);
                            if (!again || again.session !== session || ++attempts >= MAX_ATTEMPTS) return end(() => reject(err));
                            status.textContent = t("uiaWrongPassword");
                            submit.disabled = false;
                            input.select();
                        }
                    },
                },
                h("h2", { id: "uia-title" }, t("uiaTitle")),
                h("p", {}, t("uiaPassword")),
                h("label", { for: "uia-password" }, t("password")),
                input,
                status,
                h(
                    "div",
                    { className: "buttons" },
                    submit,
                    h("button", { type: "button", onclick: cancel }, t("cancel")),
                    sso && h("button", { type: "button", className: "link", onclick: () => end(() => resolve(USE_SSO)) }, t("uiaUseSso")),
                ),
            ),
        );
        document.body.appendChild(d);
        d.showModal();
        input.focus();
    });
}

// FallbackPopup is the fallback page in a popup window and a dialog in this
// page that says what is going on; its button opens the window again, or
// for the first time where the browser blocked window.open without a click.
class FallbackPopup {
    private url: string;
    private win: Window | null = null;
    private dialog: HTMLDialogElement;
    private text: HTMLElement;
    private openButton: HTMLButtonElement;
    private waiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
    private pending = false; // finished while nobody waited
    private cancelled = false;
    private timer: ReturnType<typeof setInterval> | undefined;
    private onMessage = (ev: MessageEvent) => {
        // The page posts to "*": only our own origin's page, in our window.
        if (ev.origin !== location.origin || ev.data !== "authDone" || !this.win || ev.source !== this.win) return;
        this.finish();
    };

    constructor(stage: string, session: string) {
        this.url = `${baseUrl}/_matrix/client/v3/auth/${encodeURIComponent(stage)}/fallback/web?session=${encodeURIComponent(session)}`;
        this.text = h("p", { role: "status" }, t("uiaExplain"));
        this.openButton = h("button", { type: "button", className: "primary", onclick: () => this.open() }, t("uiaOpen"));
        const cancel = h("button", { type: "button", onclick: () => this.cancel() }, t("cancel"));
        this.dialog = h(
            "dialog",
            { "aria-labelledby": "uia-title", "data-testid": "uia" },
            h("h2", { id: "uia-title" }, t("uiaTitle")),
            this.text,
            h("div", { className: "buttons" }, this.openButton, cancel),
        );
        this.dialog.addEventListener("cancel", (e) => (e.preventDefault(), this.cancel()));
        document.body.appendChild(this.dialog);
        window.addEventListener("message", this.onMessage);
        this.dialog.showModal();
        this.open();
    }

    private open(): void {
        if (this.win && !this.win.closed) {
            this.win.focus();
            return;
        }
        // Not noopener: the page posts "authDone" to its opener.
        this.win = window.open(this.url, "conclave-uia", "popup,width=520,height=680");
        if (!this.win) {
            // Blocked (no click just before): the button opens it.
            this.text.textContent = t("uiaBlocked");
            this.openButton.focus();
            return;
        }
        this.text.textContent = t("uiaExplain");
        // A window closed without a message: the request is sent again
        // and tells whether the stage was done.
        clearInterval(this.timer);
        this.timer = setInterval(() => {
            if (this.win?.closed) this.finish();
        }, 500);
    }

    // done resolves when the page says so or its window closes.
    done(): Promise<void> {
        if (this.cancelled) return Promise.reject(new UIAError(t("uiaCancelled")));
        if (this.pending) {
            this.pending = false;
            return Promise.resolve();
        }
        return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
    }

    notDone(): void {
        this.text.textContent = t("uiaNotDone");
        this.openButton.focus();
    }

    private finish(): void {
        clearInterval(this.timer);
        this.timer = undefined;
        const w = this.waiter;
        this.waiter = null;
        if (w) w.resolve();
        else this.pending = true;
    }

    private cancel(): void {
        this.cancelled = true;
        const w = this.waiter;
        this.waiter = null;
        w?.reject(new UIAError(t("uiaCancelled")));
        this.close();
    }

    close(): void {
        clearInterval(this.timer);
        window.removeEventListener("message", this.onMessage);
        if (this.win && !this.win.closed) this.win.close();
        if (this.dialog.open) this.dialog.close();
        this.dialog.remove();
    }
}
