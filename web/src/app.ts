// The signed-in screen: the conversation list on the left (invitations first,
// then rooms by last activity, with unread and highlight badges), the open
// conversation on the right (timeline with paging back, composer). On a
// narrow screen one of the two is shown at a time.
import {
    ClientEvent,
    EventStatus,
    EventTimeline,
    EventType,
    HttpApiEvent,
    KnownMembership,
    MatrixEventEvent,
    NotificationCountType,
    Preset,
    RoomEvent,
    type MatrixClient,
    type MatrixEvent,
    type Room,
} from "matrix-js-sdk";
import { DecryptionFailureCode } from "matrix-js-sdk/lib/crypto-api/index.js";
import { h, clear } from "./dom";
import { t, currentLang, type Key } from "./i18n";
import { logout, serverName } from "./matrix";
import { languagePicker } from "./widgets";
import { Security } from "./security";

const PAGE = 30; // events per back-pagination request

export class App {
    private list = h("ul", { className: "rooms", "aria-labelledby": "rooms-title" });
    private invites = h("ul", { className: "invites", "aria-labelledby": "invites-title" });
    private invitesSection = h("section", { className: "invites-section", hidden: true }, h("h2", { id: "invites-title" }, t("invites")), this.invites);
    private forms = h("div", { className: "forms" });
    private banner = h("section", { className: "banner", role: "region", "aria-label": t("verifyTitle"), hidden: true });
    private security: Security;
    private pane = h("section", { className: "room", "aria-label": t("timeline") });
    private current: Room | null = null;
    private timelineEl: HTMLOListElement | null = null;
    private olderButton: HTMLButtonElement | null = null;
    private listQueued = false;
    private timelineQueued = false;
    private receiptSent = new Map<string, string>();

    constructor(
        private root: HTMLElement,
        private client: MatrixClient,
        private onLogout: () => void,
        password: string | null,
    ) {
        this.security = new Security(client, this.banner, (e) => this.fail(e), () => this.queueTimeline(false));
        this.layout();
        this.renderList();
        this.renderPane();
        client.on(ClientEvent.Room, () => this.queueList());
        client.on(ClientEvent.DeleteRoom, () => this.queueList());
        client.on(RoomEvent.MyMembership, () => this.queueList());
        client.on(RoomEvent.Name, () => this.queueList());
        client.on(RoomEvent.Receipt, () => this.queueList());
        client.on(RoomEvent.UnreadNotifications, () => this.queueList());
        client.on(RoomEvent.Timeline, (ev, room, toStart) => {
            this.queueList();
            if (room && room === this.current) this.queueTimeline(!toStart);
        });
        client.on(RoomEvent.LocalEchoUpdated, (_ev, room) => {
            if (room === this.current) this.queueTimeline(false);
        });
        client.on(MatrixEventEvent.Decrypted, (ev) => {
            if (ev.getRoomId() === this.current?.roomId) this.queueTimeline(false);
            this.queueList();
        });
        client.on(HttpApiEvent.SessionLoggedOut, () => void this.logout());
        document.addEventListener("visibilitychange", () => this.markRead());
        void this.security.start(password);
    }

    private layout(): void {
        clear(this.root);
        document.body.classList.remove("show-room");
        const me = this.client.getUserId()!;
        const sidebar = h(
            "nav",
            { className: "sidebar", "aria-label": t("roomList") },
            h(
                "header",
                { className: "me" },
                h("span", { className: "whoami", title: t("signedInAs", me) }, me),
                h("button", { type: "button", className: "logout", onclick: () => void this.logout() }, t("logout")),
            ),
            h(
                "div",
                { className: "actions" },
                h("button", { type: "button", onclick: () => this.dmForm() }, t("newDm")),
                h("button", { type: "button", onclick: () => this.roomForm() }, t("newRoom")),
                h("button", { type: "button", onclick: () => this.joinForm() }, t("joinRoom")),
            ),
            this.banner,
            this.forms,
            this.invitesSection,
            h("h2", { id: "rooms-title" }, t("rooms")),
            this.list,
            h("footer", {}, languagePicker(() => this.redraw())),
        );
        this.root.appendChild(h("div", { className: "shell" }, sidebar, this.pane));
    }

    private redraw(): void {
        const room = this.current;
        this.layout();
        void this.security.refresh();
        this.renderList();
        this.current = null;
        if (room) this.select(room);
        else this.renderPane();
    }

    private async logout(): Promise<void> {
        await logout(this.client);
        this.onLogout();
    }

    // ---- conversation list ----

    private queueList(): void {
        if (this.listQueued) return;
        this.listQueued = true;
        requestAnimationFrame(() => {
            this.listQueued = false;
            this.renderList();
        });
    }

    private renderList(): void {
        const rooms = this.client.getRooms();
        const invited = rooms.filter((r) => r.getMyMembership() === KnownMembership.Invite);
        const joined = rooms
            .filter((r) => r.getMyMembership() === KnownMembership.Join)
            .sort((a, b) => b.getLastActiveTimestamp() - a.getLastActiveTimestamp());

        clear(this.invites);
        this.invitesSection.hidden = invited.length === 0;
        for (const room of invited) {
            const me = room.getMember(this.client.getUserId()!);
            const inviter = me?.events.member?.getSender() ?? "";
            this.invites.appendChild(
                h(
                    "li",
                    { className: "invite" },
                    h("span", { className: "name" }, room.name),
                    h("span", { className: "by" }, t("invitedBy", inviter)),
                    h(
                        "span",
                        { className: "buttons" },
                        h("button", { type: "button", className: "primary", onclick: () => void this.accept(room) }, t("accept")),
                        h("button", { type: "button", onclick: () => void this.client.leave(room.roomId).catch((e) => this.fail(e)) }, t("decline")),
                    ),
                ),
            );
        }

        clear(this.list);
        if (joined.length === 0) this.list.appendChild(h("li", { className: "empty" }, t("noRooms")));
        for (const room of joined) {
            const total = room.getUnreadNotificationCount(NotificationCountType.Total);
            const hl = room.getUnreadNotificationCount(NotificationCountType.Highlight);
            const selected = room === this.current;
            this.list.appendChild(
                h(
                    "li",
                    {},
                    h(
                        "button",
                        {
                            type: "button",
                            className: "room-item" + (selected ? " selected" : "") + (total > 0 ? " unread" : ""),
                            "aria-current": selected ? "true" : undefined,
                            "data-room-id": room.roomId,
                            onclick: () => this.select(room),
                        },
                        h("span", { className: "name" }, room.name),
                        hl > 0
                            ? h("span", { className: "badge highlight", "aria-label": t("mentions", hl) }, hl)
                            : total > 0
                              ? h("span", { className: "badge", "aria-label": t("unread", total) }, total)
                              : null,
                    ),
                ),
            );
        }
    }

    private async accept(room: Room): Promise<void> {
        try {
            await this.client.joinRoom(room.roomId);
            const joined = this.client.getRoom(room.roomId);
            if (joined) this.select(joined);
        } catch (e) {
            this.fail(e);
        }
    }

    // ---- forms: new DM, new room, join ----

    private form(title: Key, fields: [Key, string, string][], submitLabel: Key, run: (values: string[]) => Promise<void>): void {
        clear(this.forms);
        const status = h("p", { className: "error", role: "alert" });
        const inputs = fields.map(([, id]) => h("input", { id, name: id, required: id !== "invitees", autocapitalize: "none", spellcheck: "false" }));
        const submit = h("button", { type: "submit", className: "primary" }, t(submitLabel));
        const form = h(
            "form",
            {
                className: "panel",
                "aria-label": t(title),
                onsubmit: async (e: Event) => {
                    e.preventDefault();
                    submit.disabled = true;
                    status.textContent = "";
                    try {
                        await run(inputs.map((i) => i.value.trim()));
                        clear(this.forms);
                    } catch (err) {
                        status.textContent = t("error", errorText(err));
                        submit.disabled = false;
                    }
                },
                onkeydown: (e: KeyboardEvent) => {
                    if (e.key === "Escape") clear(this.forms);
                },
            },
            fields.map(([label, id, arg], i) => [h("label", { for: id }, t(label, arg)), inputs[i]]),
            status,
            h("div", { className: "buttons" }, submit, h("button", { type: "button", onclick: () => clear(this.forms) }, t("cancel"))),
        );
        this.forms.appendChild(form);
        inputs[0].focus();
    }

    private dmForm(): void {
        this.form("newDm", [["userIdToInvite", "dm-user", serverName()]], "start", async ([userId]) => {
            const { room_id } = await this.client.createRoom({
                is_direct: true,
                invite: [userId],
                preset: Preset.TrustedPrivateChat,
                initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
            });
            const direct = (this.client.getAccountData(EventType.Direct)?.getContent() ?? {}) as Record<string, string[]>;
            direct[userId] = [...(direct[userId] ?? []), room_id];
            await this.client.setAccountData(EventType.Direct, direct);
            await this.openWhenKnown(room_id);
        });
    }

    private roomForm(): void {
        this.form(
            "newRoom",
            [
                ["roomName", "room-name", ""],
                ["inviteUsers", "invitees", ""],
            ],
            "create",
            async ([name, invitees]) => {
                const invite = invitees
                    .split(",")
                    .map((s) => s.trim())
                    .filter(Boolean);
                // Private rooms are encrypted.
                const { room_id } = await this.client.createRoom({
                    name,
                    invite,
                    preset: Preset.PrivateChat,
                    initial_state: [{ type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
                });
                await this.openWhenKnown(room_id);
            },
        );
    }

    private joinForm(): void {
        this.form("joinRoom", [["roomAddress", "room-alias", serverName()]], "joinRoom", async ([alias]) => {
            const room = await this.client.joinRoom(alias);
            await this.openWhenKnown(room.roomId);
        });
    }

    // openWhenKnown opens a room as soon as sync has brought it.
    private async openWhenKnown(roomId: string): Promise<void> {
        for (let i = 0; i < 100; i++) {
            const room = this.client.getRoom(roomId);
            if (room && room.getMyMembership() === KnownMembership.Join) {
                this.select(room);
                return;
            }
            await new Promise((r) => setTimeout(r, 100));
        }
    }

    // ---- the open conversation ----

    select(room: Room): void {
        if (this.current === room) return;
        this.current = room;
        document.body.classList.add("show-room");
        for (const b of this.list.querySelectorAll<HTMLButtonElement>(".room-item")) {
            const sel = b.dataset.roomId === room.roomId;
            b.classList.toggle("selected", sel);
            if (sel) b.setAttribute("aria-current", "true");
            else b.removeAttribute("aria-current");
        }
        this.renderPane();
    }

    private renderPane(): void {
        clear(this.pane);
        this.timelineEl = null;
        const room = this.current;
        if (!room) {
            this.pane.appendChild(h("p", { className: "placeholder" }, t("selectRoom")));
            return;
        }
        const encrypted = this.client.isRoomEncrypted(room.roomId);
        this.pane.appendChild(
            h(
                "header",
                { className: "room-header" },
                h(
                    "button",
                    {
                        type: "button",
                        className: "back",
                        "aria-label": t("back"),
                        onclick: () => {
                            document.body.classList.remove("show-room");
                            this.list.querySelector<HTMLButtonElement>(".room-item.selected")?.focus();
                        },
                    },
                    "←",
                ),
                h("h2", { id: "room-title" }, room.name),
                h("span", { className: "enc " + (encrypted ? "on" : "off") }, encrypted ? t("encrypted") : t("notEncrypted")),
                h("span", { className: "count" }, t("members", room.getJoinedMemberCount())),
            ),
        );
        this.olderButton = h("button", { type: "button", className: "older", onclick: () => void this.older() }, t("loadOlder"));
        const scroller = h("div", { className: "scroller" }, this.olderButton);
        this.timelineEl = h("ol", { className: "timeline", role: "log", "aria-labelledby": "room-title", "aria-live": "polite" });
        scroller.appendChild(this.timelineEl);
        this.pane.appendChild(scroller);
        this.pane.appendChild(this.composer(room));
        this.renderTimeline(true);
    }

    private queueTimeline(stick: boolean): void {
        if (this.timelineQueued) return;
        this.timelineQueued = true;
        requestAnimationFrame(() => {
            this.timelineQueued = false;
            this.renderTimeline(stick);
        });
    }

    private renderTimeline(stickToBottom: boolean): void {
        const room = this.current;
        const ol = this.timelineEl;
        if (!room || !ol) return;
        const scroller = ol.parentElement!;
        const fromBottom = scroller.scrollHeight - scroller.scrollTop;
        const atBottom = fromBottom - scroller.clientHeight < 40;
        clear(ol);
        const events = room.getLiveTimeline().getEvents();
        for (const ev of events) {
            const li = this.renderEvent(room, ev);
            if (li) ol.appendChild(li);
        }
        if (this.olderButton) {
            const more =
                !!room.getLiveTimeline().getPaginationToken(EventTimeline.BACKWARDS) && !events.some((e) => e.getType() === EventType.RoomCreate);
            this.olderButton.disabled = !more;
            this.olderButton.textContent = more ? t("loadOlder") : t("noOlder");
        }
        if ((stickToBottom && atBottom) || fromBottom === 0) scroller.scrollTop = scroller.scrollHeight;
        else scroller.scrollTop = scroller.scrollHeight - fromBottom;
        this.markRead();
    }

    private async older(): Promise<void> {
        if (!this.current || !this.olderButton) return;
        this.olderButton.disabled = true;
        try {
            await this.client.scrollback(this.current, PAGE);
        } catch (e) {
            this.fail(e);
        }
        this.renderTimeline(false);
    }

    private renderEvent(room: Room, ev: MatrixEvent): HTMLLIElement | null {
        const sender = ev.getSender() ?? "";
        const name = room.getMember(sender)?.name ?? sender;
        const type = ev.getType();
        const time = new Date(ev.getTs()).toLocaleTimeString(currentLang(), { hour: "2-digit", minute: "2-digit" });
        const meta = (cls: string, ...body: (Node | string)[]) =>
            h(
                "li",
                { className: "event " + cls, "data-event-id": ev.getId() ?? "" },
                h("span", { className: "sender" }, name),
                h("time", { dateTime: new Date(ev.getTs()).toISOString() }, time),
                h("div", { className: "body" }, ...body),
            );
        if (ev.isRedacted()) return meta("redacted", t("redacted"));
        if (ev.isBeingDecrypted() || ev.shouldAttemptDecryption()) return meta("pending-decrypt", t("decrypting"));
        if (ev.isDecryptionFailure()) return meta("utd", t("cannotDecrypt", reason(ev)));
        if (type === EventType.RoomMessage) {
            const c = ev.getContent();
            if (typeof c.body !== "string") return null;
            const li = meta("message" + (sender === this.client.getUserId() ? " mine" : ""), c.msgtype === "m.emote" ? `* ${name} ${c.body}` : c.body);
            const status = ev.status;
            if (status === EventStatus.NOT_SENT) li.appendChild(h("span", { className: "status failed" }, t("sendFailed")));
            else if (status && status !== EventStatus.SENT) li.appendChild(h("span", { className: "status" }, t("sending")));
            return li;
        }
        if (type === EventType.RoomMember) {
            const m = ev.getContent().membership;
            const prev = ev.getPrevContent().membership;
            const target = ev.getStateKey() ?? "";
            const targetName = room.getMember(target)?.name ?? target;
            if (m === "join" && prev !== "join") return meta("state", t("joined", targetName));
            if (m === "leave" && prev === "join" && target === sender) return meta("state", t("left", targetName));
            if (m === "invite") return meta("state", t("invited", name, targetName));
            return null;
        }
        if (type === EventType.RoomCreate) return meta("state", t("createdRoom", name));
        return null;
    }

    // markRead sends a read receipt for the newest event of the open room when
    // the page is visible, which also clears its badge.
    private markRead(): void {
        const room = this.current;
        if (!room || document.visibilityState !== "visible") return;
        const events = room.getLiveTimeline().getEvents();
        const last = [...events].reverse().find((e) => e.getId() && !e.getId()!.startsWith("~") && !e.status);
        if (!last || this.receiptSent.get(room.roomId) === last.getId()) return;
        this.receiptSent.set(room.roomId, last.getId()!);
        this.client.sendReadReceipt(last).catch(() => this.receiptSent.delete(room.roomId));
    }

    private composer(room: Room): HTMLFormElement {
        const input = h("textarea", { id: "composer", name: "message", rows: 1, placeholder: t("message") });
        const send = async () => {
            const body = input.value.trim();
            if (!body) return;
            input.value = "";
            try {
                await this.client.sendTextMessage(room.roomId, body);
            } catch (e) {
                this.fail(e);
            }
        };
        input.addEventListener("keydown", (e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
                e.preventDefault();
                void send();
            }
        });
        return h(
            "form",
            {
                className: "composer",
                onsubmit: (e: Event) => {
                    e.preventDefault();
                    void send();
                },
            },
            h("label", { for: "composer", className: "visually-hidden" }, t("message")),
            input,
            h("button", { type: "submit", className: "primary" }, t("send")),
        );
    }

    private fail(e: unknown): void {
        const box = h("p", { className: "toast", role: "alert" }, t("error", errorText(e)));
        this.root.appendChild(box);
        setTimeout(() => box.remove(), 6000);
    }
}

function errorText(e: unknown): string {
    if (e && typeof e === "object") {
        const data = (e as { data?: { error?: string } }).data;
        if (data?.error) return data.error;
        if ("message" in e) return String((e as Error).message);
    }
    return String(e);
}

function reason(ev: MatrixEvent): string {
    switch (ev.decryptionFailureReason) {
        case DecryptionFailureCode.MEGOLM_UNKNOWN_INBOUND_SESSION_ID:
            return t("reasonMissingKey");
        case DecryptionFailureCode.MEGOLM_KEY_WITHHELD:
            return t("reasonWithheld");
        case DecryptionFailureCode.MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE:
            return t("reasonUnverified");
        case DecryptionFailureCode.HISTORICAL_MESSAGE_NO_KEY_BACKUP:
        case DecryptionFailureCode.HISTORICAL_MESSAGE_BACKUP_UNCONFIGURED:
        case DecryptionFailureCode.HISTORICAL_MESSAGE_WORKING_BACKUP:
        case DecryptionFailureCode.HISTORICAL_MESSAGE_USER_NOT_JOINED:
            return t("reasonHistorical");
        default:
            return t("reasonOther", ev.decryptionFailureReason ?? "?");
    }
}
