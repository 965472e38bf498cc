// Entry point: the sign-in screen, or the conversations when a session is
// saved in this browser.
import { MatrixError, type MatrixClient } from "matrix-js-sdk";
import { h, clear } from "./dom";
import { t } from "./i18n";
import { languagePicker } from "./widgets";
import {
    AuthError,
    login,
    loginOptions,
    loginWithToken,
    register,
    savedSession,
    ssoRedirect,
    start,
    forgetSession,
    serverName,
    type Session,
} from "./matrix";
import { App } from "./app";
import type { SignIn } from "./sso";

const root = document.getElementById("app")!;
let app: App | null = null;

function showLogin(mode: "login" | "register" = "login", error = ""): void {
    app = null;
    clear(root);
    const isReg = mode === "register";
    const status = h("p", { className: "error", role: "alert", "aria-live": "assertive" }, error);
    const user = h("input", { id: "username", name: "username", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" });
    const pass = h("input", { id: "password", name: "password", type: "password", autocomplete: isReg ? "new-password" : "current-password", required: true });
    const pass2 = h("input", { id: "password2", name: "password2", type: "password", autocomplete: "new-password", required: true });
    const token = h("input", { id: "reg-token", name: "token", autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
    // The name others see; the server sets none, so the username when left empty.
    const displayName = h("input", { id: "reg-display-name", name: "displayname", autocomplete: "name", maxlength: 256 });
    user.addEventListener("input", () => (displayName.placeholder = user.value.trim()));
    const submit = h("button", { type: "submit", className: "primary" }, isReg ? t("register") : t("signIn"));
    // The password fields, hidden when the server offers single sign-on only.
    const passwordPart = h(
        "div",
        { className: "password-login" },
        h("label", { for: "username" }, t("username")),
        user,
        isReg && h("label", { for: "reg-display-name" }, t("displayName")),
        isReg && displayName,
        h("label", { for: "password" }, t("password")),
        pass,
        isReg && h("label", { for: "password2" }, t("confirmPassword")),
        isReg && pass2,
        isReg && h("label", { for: "reg-token" }, t("registrationToken")),
        isReg && token,
    );
    const passwordPart2 = h(
        "div",
        { className: "password-login" },
        submit,
        h(
            "button",
            { type: "button", className: "link", onclick: () => showLogin(isReg ? "login" : "register") },
            isReg ? t("haveAccount") : t("noAccount"),
        ),
    );
    const form = h(
        "form",
        {
            className: "auth",
            "aria-labelledby": "auth-title",
            onsubmit: async (e: Event) => {
                e.preventDefault();
                if (isReg && pass.value !== pass2.value) {
                    status.textContent = t("passwordsDiffer");
                    pass2.focus();
                    return;
                }
                submit.disabled = true;
                submit.textContent = isReg ? t("registering") : t("signingIn");
                status.textContent = "";
                try {
                    const s = isReg ? await register(user.value.trim(), pass.value, token.value.trim(), displayName.value.trim()) : await login(user.value.trim(), pass.value);
                    await open(s, { password: pass.value });
                } catch (err) {
                    submit.disabled = false;
                    submit.textContent = isReg ? t("register") : t("signIn");
                    status.textContent =
                        err instanceof AuthError && err.kind !== "other" ? t(err.kind) : t("error", (err as Error).message ?? String(err));
                }
            },
        },
        h("h1", { id: "auth-title" }, t("appName")),
        h("h2", {}, isReg ? t("register") : t("signIn")),
        passwordPart,
        status,
        passwordPart2,
        languagePicker(() => showLogin(mode)),
        h("p", { className: "hint" }, serverName()),
    );
    root.appendChild(h("main", { className: "auth-page" }, form));
    user.focus();
    if (!isReg) {
        // Single sign-on, when the server offers it: a button per provider;
        // no password form when the server takes no password
        // (GET /login, Client-Server API "Login").
        void loginOptions()
            .then((opts) => {
                if (!opts.sso.length || !form.isConnected) return;
                const box = h(
                    "div",
                    { className: "sso" },
                    opts.sso.map((p) => h("button", { type: "button", onclick: () => ssoRedirect(p.id) }, t("ssoWith", p.name))),
                );
                form.insertBefore(box, passwordPart);
                if (!opts.password) {
                    passwordPart.hidden = passwordPart2.hidden = true;
                    box.querySelector("button")!.focus();
                }
            })
            .catch(() => {});
    }
    performance.mark("conclave-interactive"); // budget: docs/benchmarks.md
}

// open starts the client; signIn is given right after signing in here (to
// set up cross-signing), not after a reload.
async function open(s: Session, signIn: SignIn | null = null): Promise<void> {
    clear(root);
    const status = h("p", { className: "boot", role: "status" }, t("startingCrypto"));
    root.appendChild(status);
    let client: MatrixClient;
    try {
        client = await start(s, (stage) => (status.textContent = stage === "crypto" ? t("startingCrypto") : t("syncing")));
    } catch (e) {
        forgetSession();
        const revoked = e instanceof MatrixError && e.errcode === "M_UNKNOWN_TOKEN";
        showLogin("login", revoked ? t("signedOutRemotely") : t("error", (e as Error).message ?? String(e)));
        return;
    }
    clear(root);
    app = new App(root, client, (revoked) => showLogin("login", revoked ? t("signedOutRemotely") : ""), signIn);
    performance.mark("conclave-rooms");
}

// Back from single sign-on: /?loginToken=… (taken out of the address first).
const loginToken = new URLSearchParams(location.search).get("loginToken");
const s = savedSession();
if (loginToken) {
    history.replaceState(null, "", location.pathname);
    loginWithToken(loginToken).then(
        (session) => open(session, { password: null }),
        (err) => showLogin("login", err instanceof AuthError && err.kind !== "other" ? t(err.kind) : t("error", String(err.message ?? err))),
    );
} else if (s) void open(s);
else showLogin();
