// The Sessions panel: where this account is signed in (GET /devices), this
// session first, each with its name, ID, when and from where it was last
// seen, and whether it is verified (the Rust crypto's view of the user's
// cross-signing); a session can be renamed (PUT /devices/{id}), and the
// others signed out one by one (DELETE /devices/{id}) or all at once
// (POST /delete_devices), which asks for the user again (sso.ts): the
// password, or single sign-on for an account without one. What someone
// whose phone was stolen needs. Client-Server API, "Device Management".
import type { IMyDevice, MatrixClient } from "matrix-js-sdk";
import { h, clear, append } from "./dom";
import { t, currentLang, type Key } from "./i18n";
import { interactiveAuth, UIAError } from "./sso";

// MAX_SHOWN bounds the list drawn (an account with thousands of devices
// still gets a usable panel); "sign out all" takes at most the server's
// limit for one POST /delete_devices.
const MAX_SHOWN = 200;
const MAX_DELETE = 1000;

export function sessionsPanel(client: MatrixClient, container: HTMLElement, close: () => void): void {
    clear(container);
    const me = client.getUserId()!;
    const mine = client.getDeviceId();
    const status = h("p", { className: "error", role: "alert" });
    const list = h("ul", { className: "sessions", "aria-labelledby": "sessions-title", "aria-busy": "true" }, h("li", { className: "empty" }, t("loadingSessions")));
    const others = h("button", { type: "button", hidden: true }, t("signOutOthers"));
    const panel = h(
        "section",
        {
            className: "panel sessions-panel",
            "aria-labelledby": "sessions-title",
            onkeydown: (e: KeyboardEvent) => {
                if (e.key === "Escape" && !(e.target as Element).closest("form")) close();
            },
        },
        h("h3", { id: "sessions-title", tabindex: -1 }, t("sessions")),
        list,
        status,
        h("div", { className: "buttons wrap" }, others, h("button", { type: "button", onclick: close }, t("close"))),
    );
    container.appendChild(panel);
    panel.querySelector("h3")!.focus();

    const failed = (e: unknown) => {
        status.textContent = e instanceof UIAError ? e.message : t("error", errorText(e));
    };

    // signOut deletes devices after the user confirmed, then reloads.
    const signOut = async (ids: string[], title: Key, text: string) => {
        if (!(await confirmDialog(t(title), text, t("signOutSession")))) return;
        status.textContent = "";
        try {
            await interactiveAuth(
                (auth) => (ids.length === 1 ? client.deleteDevice(ids[0], auth ?? undefined) : client.deleteMultipleDevices(ids, auth ?? undefined)),
                me,
                null, // asked again on purpose: the password typed at sign-in is not reused
            );
        } catch (e) {
            failed(e);
        }
        await load();
    };

    const item = (d: IMyDevice, verified: boolean | null): HTMLElement => {
        const name = d.display_name || d.device_id;
        const current = d.device_id === mine;
        const seen = d.last_seen_ts ? t("lastSeen", when(d.last_seen_ts)) + (d.last_seen_ip ? " " + t("lastSeenIp", d.last_seen_ip) : "") : t("neverSeen");
        const li = h("li", { className: "session", "data-device-id": d.device_id });
        const draw = () => {
            clear(li);
            append(li, [
                h("span", { className: "name" }, name, current && h("span", { className: "tag" }, t("thisSession"))),
                h("span", { className: "meta" }, t("sessionId", d.device_id)),
                h("span", { className: "meta" }, seen),
                verified !== null && h("span", { className: "meta " + (verified ? "verified" : "unverified") }, verified ? t("sessionVerified") : t("sessionNotVerified")),
                h(
                    "span",
                    { className: "buttons" },
                    h("button", { type: "button", "aria-label": t("renameSessionOf", name), onclick: rename }, t("rename")),
                    !current &&
                        h(
                            "button",
                            { type: "button", "aria-label": t("signOutSessionOf", name), onclick: () => void signOut([d.device_id], "signOutConfirmTitle", t("signOutConfirm", name)) },
                            t("signOutSession"),
                        ),
                ),
            ]);
        };
        const rename = () => {
            clear(li);
            const id = "rename-" + d.device_id.replace(/[^A-Za-z0-9_-]/g, "_");
            const input = h("input", { id, value: d.display_name ?? "", maxlength: 100, required: true });
            const save = h("button", { type: "submit", className: "primary" }, t("save"));
            li.append(
                h(
                    "form",
                    {
                        onsubmit: async (e: Event) => {
                            e.preventDefault();
                            save.disabled = true;
                            status.textContent = "";
                            try {
                                await client.setDeviceDetails(d.device_id, { display_name: input.value.trim() });
                                await load();
                            } catch (err) {
                                failed(err);
                                save.disabled = false;
                            }
                        },
                        onkeydown: (e: KeyboardEvent) => {
                            if (e.key === "Escape") (e.stopPropagation(), draw(), li.querySelector("button")?.focus());
                        },
                    },
                    h("label", { for: id }, t("sessionName")),
                    input,
                    h("span", { className: "buttons" }, save, h("button", { type: "button", onclick: () => (draw(), li.querySelector("button")?.focus()) }, t("cancel"))),
                ),
            );
            input.focus();
            input.select();
        };
        draw();
        return li;
    };

    // load asks the server for the list and draws it; the verification
    // states come from the local crypto store (no request each).
    let seq = 0;
    const load = async () => {
        const n = ++seq;
        let devices: IMyDevice[];
        try {
            devices = (await client.getDevices()).devices;
        } catch (e) {
            list.removeAttribute("aria-busy");
            return failed(e);
        }
        devices.sort((a, b) => (a.device_id === mine ? -1 : b.device_id === mine ? 1 : (b.last_seen_ts ?? 0) - (a.last_seen_ts ?? 0)));
        devices = devices.slice(0, MAX_SHOWN);
        const crypto = client.getCrypto();
        const verified = await Promise.all(
            devices.map((d) =>
                crypto
                    ? crypto.getDeviceVerificationStatus(me, d.device_id).then(
                          (s) => !!s?.isVerified(),
                          () => null,
                      )
                    : null,
            ),
        );
        if (n !== seq || !panel.isConnected) return;
        const focusedId = (document.activeElement?.closest(".session") as HTMLElement | null)?.dataset.deviceId;
        clear(list);
        list.removeAttribute("aria-busy");
        devices.forEach((d, i) => list.appendChild(item(d, verified[i])));
        const rest = devices.filter((d) => d.device_id !== mine).map((d) => d.device_id).slice(0, MAX_DELETE);
        others.hidden = rest.length === 0;
        others.onclick = () => void signOut(rest, "signOutOthersConfirmTitle", t("signOutOthersConfirm", rest.length));
        // Focus stays near where it was (the list was redrawn).
        if (focusedId) (list.querySelector(`[data-device-id="${CSS.escape(focusedId)}"] button`) as HTMLElement | null)?.focus();
    };
    void load();
}

// when is a time as people say it: "5 minutes ago", "yesterday", or a
// date beyond a week.
function when(ts: number): string {
    const s = Math.round((ts - Date.now()) / 1000);
    const abs = Math.abs(s);
    const rtf = new Intl.RelativeTimeFormat(currentLang(), { numeric: "auto" });
    if (abs < 60) return rtf.format(0, "second");
    if (abs < 3600) return rtf.format(Math.round(s / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(s / 3600), "hour");
    if (abs < 7 * 86400) return rtf.format(Math.round(s / 86400), "day");
    return new Date(ts).toLocaleDateString(currentLang(), { dateStyle: "medium" });
}

// confirmDialog asks a yes/no question in a modal dialog (labelled, Escape
// answers no).
function confirmDialog(title: string, text: string, ok: string): Promise<boolean> {
    return new Promise((resolve) => {
        const d = h("dialog", { "aria-labelledby": "confirm-title" });
        const answer = (yes: boolean) => {
            if (d.open) d.close();
            d.remove();
            resolve(yes);
        };
        d.addEventListener("cancel", (e) => (e.preventDefault(), answer(false)));
        const cancel = h("button", { type: "button", onclick: () => answer(false) }, t("cancel"));
        d.append(
            h("h2", { id: "confirm-title" }, title),
            h("p", {}, text),
            h("div", { className: "buttons" }, h("button", { type: "button", className: "primary danger", onclick: () => answer(true) }, ok), cancel),
        );
        document.body.appendChild(d);
        d.showModal();
        cancel.focus();
    });
}

function errorText(e: unknown): string {
    const data = (e as { data?: { error?: string } } | null)?.data;
    return data?.error ?? (e as Error)?.message ?? String(e);
}
