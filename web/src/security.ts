// Encryption done right (issue 13): a first sign-in sets up cross-signing
// and key backup and shows the recovery key once; a new session of an
// existing user is verified by emoji comparison (SAS) with another session or
// with the recovery key, after which history is restored from key backup.
import { ClientEvent, type MatrixClient } from "matrix-js-sdk";
import {
    CryptoEvent,
    decodeRecoveryKey,
    VerificationPhase,
    VerificationRequestEvent,
    VerifierEvent,
    type ShowSasCallbacks,
    type VerificationRequest,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { h, clear } from "./dom";
import { t, currentLang } from "./i18n";
import { emojiName } from "./sas";
import { useRecoveryKey, forgetSecretKeys } from "./matrix";
import type { AuthDict } from "matrix-js-sdk/lib/interactive-auth.js";
import { interactiveAuth, type SignIn } from "./sso";

export class Security {
    private restoring = false;
    private restoreAgain = false;
    private refreshSeq = 0;
    private settingUp = false;
    private stopped = false;

    constructor(
        private client: MatrixClient,
        private banner: HTMLElement,
        private fail: (e: unknown) => void,
        private onHistory: () => void,
    ) {
        client.on(CryptoEvent.VerificationRequestReceived, (req) => void this.incoming(req));
        client.on(CryptoEvent.KeyBackupDecryptionKeyCached, () => void this.restore());
        client.on(CryptoEvent.UserTrustStatusChanged, () => this.poke());
        client.on(CryptoEvent.KeysChanged, () => this.poke());
        // Our own devices changed: perhaps a signature of this session by
        // the session that verified it.
        client.on(CryptoEvent.DevicesUpdated, (users) => {
            if (users.includes(client.getUserId()!)) this.poke();
        });
        // The signature may land in a /keys/query answer no event reports:
        // while the banner is up, look again after each sync (a local query).
        client.on(ClientEvent.Sync, () => {
            if (!this.banner.hidden) this.poke();
        });
    }

    // stop is called when the session ends (signed out here or elsewhere):
    // the crypto is freed, and whatever was under way fails quietly.
    stop(): void {
        this.stopped = true;
    }

    private poke(): void {
        if (this.stopped) return;
        this.refresh().catch((e) => {
            if (!this.stopped) throw e;
        });
    }

    private get crypto() {
        return this.client.getCrypto()!;
    }

    // start runs after the first sync. signIn is there right after a
    // sign-in or registration on this device (with the password typed, for
    // the user-interactive auth publishing cross-signing keys may need; null
    // after single sign-on), null after a reload.
    async start(signIn: SignIn | null): Promise<void> {
        const me = this.client.getUserId()!;
        try {
            const hasKeys = await this.crypto.userHasCrossSigningKeys(me, true);
            if (!hasKeys && signIn) await this.setUp(signIn.password);
            await this.refresh();
            // A session that already holds the backup key (earlier restore,
            // or the one that created it) keeps backing up new keys.
            await this.crypto.checkKeyBackupAndEnable();
        } catch (e) {
            if (!this.stopped) this.fail(e);
        }
    }

    // setUp creates cross-signing keys, secret storage and key backup, and
    // shows the recovery key once; reset replaces the user's (the SDK's
    // resetEncryption deletes key backups and secret storage, makes new
    // cross-signing keys and a new backup). Publishing cross-signing keys
    // may need the user again (sso.ts): the password typed at sign-in, else
    // the server's fallback page in a popup.
    private async setUp(password: string | null, reset = false): Promise<void> {
        // refresh() asks the server for our keys (the SDK's
        // userHasCrossSigningKeys does, for our own user): an answer with
        // the old keys, while new ones wait for the user to confirm their
        // upload, would make the crypto drop the new private keys.
        this.settingUp = true;
        try {
            await this.setUpKeys(password, reset);
        } finally {
            this.settingUp = false;
        }
    }

    private async setUpKeys(password: string | null, reset: boolean): Promise<void> {
        const me = this.client.getUserId()!;
        const auth = async (makeRequest: (a: AuthDict | null) => Promise<void>) => {
            await interactiveAuth(makeRequest, me, password);
        };
        if (reset) await this.crypto.resetEncryption(auth);
        else await this.crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: auth });
        let recoveryKey = "";
        await this.crypto.bootstrapSecretStorage({
            createSecretStorageKey: async () => {
                const k = await this.crypto.createRecoveryKeyFromPassphrase();
                recoveryKey = k.encodedPrivateKey ?? "";
                return k;
            },
            setupNewSecretStorage: true,
            setupNewKeyBackup: !reset,
        });
        forgetSecretKeys();
        if (recoveryKey) await this.showRecoveryKey(recoveryKey);
    }

    private showRecoveryKey(key: string): Promise<void> {
        return new Promise((resolve) => {
            const d = dialog("recovery-title");
            const done = h("button", { type: "button", className: "primary", onclick: () => (d.close(), resolve()) }, t("savedIt"));
            d.append(
                h("h2", { id: "recovery-title" }, t("recoveryKeyTitle")),
                h("p", {}, t("recoveryKeyExplain")),
                h("p", { className: "recovery-key", "data-testid": "recovery-key", tabindex: 0 }, key),
                h(
                    "div",
                    { className: "buttons" },
                    h("button", { type: "button", onclick: () => void navigator.clipboard?.writeText(key).catch(() => {}) }, t("copy")),
                    done,
                ),
            );
            d.addEventListener("cancel", (e) => e.preventDefault()); // must be acknowledged
            d.showModal();
            done.focus();
        });
    }

    // refresh shows the "verify this session" banner while this session is
    // not verified by the user's cross-signing identity.
    async refresh(): Promise<boolean> {
        const me = this.client.getUserId()!;
        // Refreshes overlap (several events at once): only the newest draws,
        // so an older answer cannot bring the banner back.
        const seq = ++this.refreshSeq;
        if (this.settingUp || this.stopped) return false; // see setUp; start() refreshes after
        const status = await this.crypto.getDeviceVerificationStatus(me, this.client.getDeviceId()!);
        const hasKeys = await this.crypto.userHasCrossSigningKeys(me);
        if (seq !== this.refreshSeq) return !!status?.crossSigningVerified;
        clear(this.banner);
        if (!hasKeys || status?.crossSigningVerified) {
            this.banner.hidden = true;
            return true;
        }
        this.banner.hidden = false;
        this.banner.append(
            h("p", {}, t("unverifiedSession")),
            h(
                "div",
                { className: "buttons" },
                h("button", { type: "button", className: "primary", onclick: () => void this.verifyWithOtherSession() }, t("verifyOther")),
                h("button", { type: "button", onclick: () => this.recoveryKeyForm() }, t("useRecoveryKey")),
            ),
        );
        return false;
    }

    // settle looks again for a few seconds after a verification: the
    // signature of this session reaches its crypto store through a device
    // list update, which no event of ours may follow.
    private async settle(): Promise<void> {
        for (let i = 0; i < 40; i++) {
            if (await this.refresh()) return;
            await new Promise((r) => setTimeout(r, 250));
        }
    }

    private recoveryKeyForm(): void {
        const d = dialog("rk-title");
        const input = h("input", { id: "recovery-key-input", autocomplete: "off", spellcheck: "false", required: true });
        const status = h("p", { className: "error", role: "alert" });
        const submit = h("button", { type: "submit", className: "primary" }, t("verify"));
        d.append(
            h(
                "form",
                {
                    onsubmit: async (e: Event) => {
                        e.preventDefault();
                        submit.disabled = true;
                        status.textContent = "";
                        try {
                            await this.verifyWithRecoveryKey(input.value);
                            d.close();
                        } catch (err) {
                            status.textContent = t("wrongRecoveryKey");
                            submit.disabled = false;
                        }
                    },
                },
                h("h2", { id: "rk-title" }, t("useRecoveryKey")),
                h("label", { for: "recovery-key-input" }, t("recoveryKey")),
                input,
                status,
                h("div", { className: "buttons" }, submit, h("button", { type: "button", onclick: () => d.close() }, t("cancel"))),
                h("button", { type: "button", className: "link", onclick: () => (d.close(), this.confirmReset()) }, t("lostRecoveryKey")),
            ),
        );
        d.showModal();
        input.focus();
    }

    // confirmReset: with neither another session nor the recovery key, the
    // user starts again with a new secure identity and recovery key
    // (replacing cross-signing keys asks for the user again: sso.ts).
    private confirmReset(): void {
        const d = dialog("reset-title");
        const go = h("button", { type: "button", className: "primary" }, t("reset"));
        go.onclick = async () => {
            d.close();
            try {
                await this.setUp(null, true);
                await this.refresh();
                await this.crypto.checkKeyBackupAndEnable();
            } catch (e) {
                this.fail(e);
            }
        };
        d.append(
            h("h2", { id: "reset-title" }, t("resetTitle")),
            h("p", {}, t("resetExplain")),
            h("div", { className: "buttons" }, go, h("button", { type: "button", onclick: () => d.close() }, t("cancel"))),
        );
        d.showModal();
        go.focus();
    }

    async verifyWithRecoveryKey(text: string): Promise<void> {
        const key = decodeRecoveryKey(text.trim());
        const def = await this.client.secretStorage.getKey();
        if (!def || !(await this.client.secretStorage.checkKey(key, def[1]))) throw new Error("wrong recovery key");
        useRecoveryKey(key);
        try {
            // Cross-signing keys are in secret storage: imported, and this
            // session signed with them.
            await this.crypto.bootstrapCrossSigning({});
            await this.crypto.loadSessionBackupPrivateKeyFromSecretStorage();
            await this.crypto.checkKeyBackupAndEnable();
        } finally {
            useRecoveryKey(null);
        }
        void this.restore();
        await this.settle();
    }

    // restore downloads the room keys in backup (once the backup key is
    // here: typed recovery key or sent by a verified session) and redraws.
    async restore(): Promise<void> {
        if (this.restoring) {
            // Asked again while running (a key arrived meanwhile): run once more after.
            this.restoreAgain = true;
            return;
        }
        this.restoring = true;
        try {
            do {
                this.restoreAgain = false;
                try {
                    await this.crypto.checkKeyBackupAndEnable();
                    await this.crypto.restoreKeyBackup();
                    this.onHistory();
                } catch {
                    // no backup or no key yet: nothing to restore
                }
            } while (this.restoreAgain);
        } finally {
            this.restoring = false;
        }
    }

    // ---- emoji verification ----

    private async verifyWithOtherSession(): Promise<void> {
        try {
            const req = await this.crypto.requestOwnUserVerification();
            await this.runRequest(req, true);
        } catch (e) {
            this.fail(e);
        }
    }

    private async incoming(req: VerificationRequest): Promise<void> {
        if (!req.isSelfVerification || req.initiatedByMe) return;
        const d = dialog("incoming-title");
        d.append(
            h("h2", { id: "incoming-title" }, t("verifyRequestTitle")),
            h("p", {}, t("verifyRequestBody", req.otherDeviceId ?? "")),
            h(
                "div",
                { className: "buttons" },
                h(
                    "button",
                    {
                        type: "button",
                        className: "primary",
                        onclick: () => {
                            d.close();
                            void this.runRequest(req, false).catch((e) => this.fail(e));
                        },
                    },
                    t("accept"),
                ),
                h("button", { type: "button", onclick: () => (d.close(), void req.cancel()) }, t("decline")),
            ),
        );
        req.on(VerificationRequestEvent.Change, () => {
            if (req.phase === VerificationPhase.Cancelled && d.open) d.close();
        });
        d.showModal();
    }

    // runRequest walks one request to the emoji comparison and its end.
    private async runRequest(req: VerificationRequest, initiator: boolean): Promise<void> {
        const d = dialog("sas-title");
        const body = h("div", { className: "sas" }, h("p", { role: "status" }, t("waitingOther")));
        const cancel = h("button", { type: "button", onclick: () => void req.cancel() }, t("cancel"));
        d.append(h("h2", { id: "sas-title" }, t("verifyTitle")), body, h("div", { className: "buttons" }, cancel));
        d.addEventListener("cancel", () => void req.cancel());
        d.showModal();
        const ended = new Promise<void>((resolve) => {
            const check = () => {
                if (req.phase === VerificationPhase.Done || req.phase === VerificationPhase.Cancelled) {
                    req.off(VerificationRequestEvent.Change, check);
                    resolve();
                }
            };
            req.on(VerificationRequestEvent.Change, check);
        });
        try {
            if (!initiator) await req.accept();
            // Wait for the other side to accept (initiator) or start.
            await waitFor(req, () => req.phase >= VerificationPhase.Ready);
            if (req.phase === VerificationPhase.Cancelled) throw new Error(req.cancellationCode ?? "cancelled");
            let verifier = req.verifier;
            if (!verifier) {
                if (initiator) verifier = await req.startVerification("m.sas.v1");
                else {
                    await waitFor(req, () => !!req.verifier || req.phase >= VerificationPhase.Cancelled);
                    verifier = req.verifier;
                }
            }
            if (!verifier) throw new Error(req.cancellationCode ?? "cancelled");
            verifier.on(VerifierEvent.ShowSas, (sas) => this.showSas(body, sas));
            const shown = verifier.getShowSasCallbacks();
            if (shown) this.showSas(body, shown);
            await verifier.verify();
            clear(body);
            body.append(h("p", { role: "status", className: "done" }, t("verified")));
            cancel.textContent = t("close");
            cancel.onclick = () => d.close();
            cancel.focus();
            await this.settle();
            // The other session sends the backup key (secret gossiping);
            // KeyBackupDecryptionKeyCached then restores history.
        } catch (e) {
            clear(body);
            body.append(h("p", { role: "alert", className: "error" }, t("verifyFailed")));
            cancel.textContent = t("close");
            cancel.onclick = () => d.close();
        }
        await Promise.race([ended, new Promise((r) => setTimeout(r, 0))]);
    }

    private showSas(body: HTMLElement, sas: ShowSasCallbacks): void {
        clear(body);
        const emoji = sas.sas.emoji ?? [];
        const match = h("button", { type: "button", className: "primary" }, t("theyMatch"));
        match.onclick = () => {
            match.disabled = true;
            void sas.confirm();
            clear(body);
            body.append(h("p", { role: "status" }, t("waitingOther")));
        };
        body.append(
            h("p", {}, t("compareEmoji")),
            h(
                "ol",
                { className: "emoji", "aria-label": t("emojiList") },
                emoji.map(([e, name]) =>
                    h("li", {}, h("span", { className: "glyph", "aria-hidden": "true" }, e), h("span", { className: "label" }, emojiName(name, currentLang()))),
                ),
            ),
            h("div", { className: "buttons" }, match, h("button", { type: "button", onclick: () => sas.mismatch() }, t("theyDiffer"))),
        );
        match.focus();
    }
}

function dialog(labelledBy: string): HTMLDialogElement {
    const d = h("dialog", { "aria-labelledby": labelledBy });
    d.addEventListener("close", () => d.remove());
    document.body.appendChild(d);
    return d;
}

function waitFor(req: VerificationRequest, ok: () => boolean): Promise<void> {
    return new Promise((resolve) => {
        if (ok()) return resolve();
        const check = () => {
            if (ok() || req.phase === VerificationPhase.Cancelled) {
                req.off(VerificationRequestEvent.Change, check);
                resolve();
            }
        };
        req.on(VerificationRequestEvent.Change, check);
    });
}
