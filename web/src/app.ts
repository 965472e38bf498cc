// The signed-in screen: the conversation list on the left (invitations first,
// then rooms by last activity, with unread and highlight badges), the open
// conversation on the right (timeline with paging back, composer), and a
// thread beside it when one is open. On a narrow screen one of them is shown
// at a time.
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
    RoomMemberEvent,
    ThreadEvent,
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
import { sessionsPanel } from "./sessions";
import type { SignIn } from "./sso";
import { avatarUrl, blobUrl, cachedAvatarUrl, forgetMedia, previewable, sendFile } from "./attachments";

const PAGE = 30; // events per back-pagination request
const QUICK_REACTIONS = ["👍", "❤️", "😂"];
const MAX_FILE = 50 << 20; // the server's default max_upload_bytes
const NARROW = "(max-width: 700px)"; // as in style.css: list or room, one at a time
const RETRY_MS = 5000; // undecryptable messages of the open room tried again (the SDK's backup back-off is 5 s)
const RETRY_MAX = 30; // at most this many of them each time

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
    private items = new Map<string, { li: HTMLLIElement; sig: string }>();
    private main: Compose | null = null; // the room's composer
    private threadCompose: Compose | null = null; // the open thread's
    private threadRoot: string | null = null; // the open thread's root event ID
    private threadPanel: HTMLElement | null = null;
    private threadTimelineEl: HTMLOListElement | null = null;
    private threadOlder: HTMLButtonElement | null = null;
    private watched: Room | null = null; // the room whose thread events redraw
    private typingEl: HTMLElement | null = null;
    private membersPanel: HTMLElement | null = null;
    private showMembers = false;
    private retryTimer: ReturnType<typeof setInterval> | undefined;
    private profile: { displayname?: string; avatar_url?: string } | null = null;
    private closed = false; // signed out

    constructor(
        private root: HTMLElement,
        private client: MatrixClient,
        private onLogout: (revoked: boolean) => void,
        signIn: SignIn | null,
    ) {
        this.security = new Security(client, this.banner, (e) => this.fail(e), () => this.queueTimeline(false));
        this.layout();
        this.renderList();
        this.renderPane();
        void this.loadProfile();
        client.on(ClientEvent.Room, () => this.queueList());
        client.on(ClientEvent.DeleteRoom, () => this.queueList());
        client.on(RoomEvent.MyMembership, () => this.queueList());
        client.on(RoomEvent.Name, () => this.queueList());
        client.on(RoomEvent.Receipt, () => this.queueList());
        // Unread counts arrive with each sync (the list redraws only what changed).
        client.on(ClientEvent.Sync, () => this.queueList());
        client.on(RoomEvent.Timeline, (ev, room, toStart, _removed, data) => {
            this.queueList();
            if (!toStart && data?.liveEvent && room) void this.notify(room, ev);
            if (room && room === this.current) this.queueTimeline(!toStart);
        });
        client.on(RoomEvent.LocalEchoUpdated, (_ev, room) => {
            if (room === this.current) this.queueTimeline(false);
        });
        client.on(MatrixEventEvent.Decrypted, (ev) => {
            if (ev.getRoomId() === this.current?.roomId) this.queueTimeline(false);
            this.queueList();
        });
        client.on(RoomMemberEvent.Typing, (_ev, member) => {
            if (member.roomId === this.current?.roomId) this.renderTyping();
        });
        client.on(RoomMemberEvent.Membership, (_ev, member) => {
            if (member.roomId !== this.current?.roomId) return;
            this.renderMembers();
            this.queueTimeline(false); // which redraws the header's count
        });
        client.on(RoomEvent.Receipt, (_ev, room) => {
            if (room === this.current) this.queueTimeline(false);
        });
        // This session was signed out elsewhere (its token revoked, as by
        // the Sessions panel of another one): every request now fails with
        // M_UNKNOWN_TOKEN, each emitting this; the first one leaves.
        client.on(HttpApiEvent.SessionLoggedOut, () => void this.logout(true));
        document.addEventListener("visibilitychange", () => this.markRead());
        void this.security.start(signIn);
        // Messages that could not be decrypted are tried again every few
        // seconds while their room is open: a key that was not yet in key
        // backup (senders back up with a delay) is then fetched from there.
        this.retryTimer = setInterval(() => this.retryDecryption(), RETRY_MS);
    }

    private retryDecryption(): void {
        const room = this.current;
        if (!room || document.visibilityState !== "visible") return;
        // The SDK's crypto backend (not in its public types) takes retries.
        const backend = (this.client as unknown as { cryptoBackend?: Parameters<MatrixEvent["attemptDecryption"]>[0] }).cryptoBackend;
        if (!backend) return;
        const utd = [...room.getLiveTimeline().getEvents(), ...this.threadEvents(room)]
            .filter((e) => e.isDecryptionFailure() && !e.isBeingDecrypted())
            .slice(-RETRY_MAX);
        for (const ev of utd) void ev.attemptDecryption(backend, { isRetry: true }).catch(() => {});
    }

    // myName is my display name: from my profile (read at start, as the
    // SDK knows it only from rooms' member events), else from the SDK.
    private myName(): string {
        const me = this.client.getUserId()!;
        return this.profile?.displayname || this.client.getUser(me)?.displayName || me;
    }

    private get meEl(): HTMLElement {
        const me = this.client.getUserId()!;
        return this.avatar(me, this.myName(), this.profile?.avatar_url ?? this.client.getUser(me)?.avatarUrl);
    }

    // loadProfile reads my profile and redraws the header with it.
    private async loadProfile(): Promise<void> {
        try {
            this.profile = await this.client.getProfileInfo(this.client.getUserId()!);
        } catch {
            return; // no profile yet: the user ID is shown
        }
        const header = this.root.querySelector(".me");
        if (!header) return;
        header.querySelector(".avatar")?.replaceWith(this.meEl);
        const who = header.querySelector(".whoami");
        if (who) who.textContent = this.myName();
    }

    private layout(): void {
        clear(this.root);
        document.body.classList.remove("show-room");
        this.invitesSection.querySelector("h2")!.textContent = t("invites");
        this.pane.setAttribute("aria-label", t("timeline"));
        this.banner.setAttribute("aria-label", t("verifyTitle"));
        const me = this.client.getUserId()!;
        const sidebar = h(
            "nav",
            { className: "sidebar", "aria-label": t("roomList") },
            h(
                "header",
                { className: "me" },
                this.meEl,
                h("button", { type: "button", className: "whoami link", title: t("signedInAs", me), "aria-label": t("editProfile"), onclick: () => this.profileForm() }, this.myName()),
                h(
                    "span",
                    { className: "me-actions" },
                    h("button", { type: "button", className: "sessions-button", onclick: () => sessionsPanel(this.client, this.forms, () => this.closeForms()) }, t("sessions")),
                    h("button", { type: "button", className: "logout", onclick: () => void this.logout() }, t("logout")),
                ),
            ),
            h(
                "div",
                { className: "sidebar-actions" },
                h("button", { type: "button", onclick: () => this.dmForm() }, t("newDm")),
                h("button", { type: "button", onclick: () => this.roomForm() }, t("newRoom")),
                h("button", { type: "button", onclick: () => this.joinForm() }, t("joinRoom")),
            ),
            this.banner,
            this.forms,
            this.invitesSection,
            h("h2", { id: "rooms-title" }, t("rooms")),
            this.list,
            h("footer", {}, this.notificationsButton(), languagePicker(() => this.redraw())),
        );
        this.root.appendChild(h("div", { className: "shell" }, sidebar, this.pane));
    }

    // avatar is a small picture (a thumbnail of mxc) or, without one or
    // until it has loaded, the name's initial on a colour derived from id
    // (the same person or room has the same colour everywhere). lazy: the
    // thumbnail is fetched only once the avatar is on screen (long lists).
    private avatar(id: string, name: string, mxc: string | null | undefined, lazy = false): HTMLElement {
        const el = h("span", { className: `avatar av${colourIndex(id)}`, "aria-hidden": "true" }, initial(name || id));
        if (!mxc?.startsWith("mxc://")) return el;
        const show = (u: string) => {
            clear(el);
            el.appendChild(h("img", { src: u, alt: "" }));
        };
        const ready = cachedAvatarUrl(mxc);
        if (ready) show(ready);
        else if (lazy) lazyAvatars.watch(el, () => avatarUrl(this.client, mxc).then(show, () => {}));
        else avatarUrl(this.client, mxc).then(show, () => {});
        return el;
    }

    // roomAvatar: the room's picture (m.room.avatar), else in a DM the other
    // person's; the colour follows the other person in a DM, else the room.
    // A DM is a room in m.direct, or one without a name or address of its
    // own (named after its members: the invitee's side of a DM).
    private roomAvatar(room: Room, dms: Set<string>): { el: () => HTMLElement; sig: string } {
        const named = !!room.currentState.getStateEvents(EventType.RoomName, "")?.getContent().name || !!room.getCanonicalAlias();
        const partner = dms.has(room.roomId) || !named ? room.getAvatarFallbackMember() : undefined;
        const mxc = room.getMxcAvatarUrl() ?? partner?.getMxcAvatarUrl();
        const id = partner?.userId ?? room.roomId;
        return { el: () => this.avatar(id, room.name, mxc, true), sig: `${mxc ?? ""}\u0000${id}` };
    }

    // profileForm changes the display name and the avatar.
    private profileForm(): void {
        clear(this.forms);
        const me = this.client.getUserId()!;
        const status = h("p", { className: "error", role: "alert" });
        const name = h("input", { id: "display-name", value: this.myName() === me ? "" : this.myName() });
        const file = h("input", { id: "avatar-file", type: "file", accept: "image/png,image/jpeg,image/gif,image/webp" });
        const submit = h("button", { type: "submit", className: "primary" }, t("save"));
        const form = h(
            "form",
            {
                className: "panel",
                "aria-label": t("editProfile"),
                onsubmit: async (e: Event) => {
                    e.preventDefault();
                    submit.disabled = true;
                    status.textContent = "";
                    try {
                        const f = file.files?.[0];
                        this.profile ??= {};
                        if (f) {
                            const up = await this.client.uploadContent(f, { type: f.type, name: f.name });
                            await this.client.setAvatarUrl(up.content_uri);
                            this.profile.avatar_url = up.content_uri;
                        }
                        if (name.value.trim()) {
                            await this.client.setDisplayName(name.value.trim());
                            this.profile.displayname = name.value.trim();
                        }
                        clear(this.forms);
                        this.redraw();
                    } catch (err) {
                        status.textContent = t("error", errorText(err));
                        submit.disabled = false;
                    }
                },
                onkeydown: (e: KeyboardEvent) => {
                    if (e.key === "Escape") clear(this.forms);
                },
            },
            h("label", { for: "display-name" }, t("displayName")),
            name,
            h("label", { for: "avatar-file" }, t("avatar")),
            file,
            status,
            h("div", { className: "buttons" }, submit, h("button", { type: "button", onclick: () => clear(this.forms) }, t("cancel"))),
        );
        this.forms.appendChild(form);
        name.focus();
    }

    // closeForms closes the open panel, focus back on the header.
    private closeForms(): void {
        clear(this.forms);
        (this.root.querySelector(".sessions-button") as HTMLElement | null)?.focus();
    }

    // notificationsButton asks, on a click (browsers want a gesture), for
    // permission to show notifications while the tab is in the background.
    private notificationsButton(): HTMLElement | null {
        if (!("Notification" in window) || Notification.permission !== "default") return null;
        const b = h("button", { type: "button", className: "link" }, t("enableNotifications"));
        b.onclick = async () => {
            await Notification.requestPermission().catch(() => "denied");
            b.remove();
        };
        return b;
    }

    // notify shows a browser notification for a new message that the push
    // rules say notifies, when the tab is not visible.
    private async notify(room: Room, ev: MatrixEvent): Promise<void> {
        if (document.visibilityState === "visible" || !("Notification" in window) || Notification.permission !== "granted") return;
        if (ev.getSender() === this.client.getUserId() || room.getMyMembership() !== KnownMembership.Join) return;
        await this.client.decryptEventIfNeeded(ev);
        if (ev.getType() !== EventType.RoomMessage || !this.client.getPushActionsForEvent(ev, true)?.notify) return;
        const sender = room.getMember(ev.getSender() ?? "")?.name ?? ev.getSender();
        const n = new Notification(room.name, { body: `${sender}: ${summary(ev)}`, tag: room.roomId });
        n.onclick = () => {
            window.focus();
            this.select(room);
            n.close();
        };
    }

    private redraw(): void {
        const room = this.current;
        const showingRoom = document.body.classList.contains("show-room");
        this.layout();
        void this.security.refresh();
        this.renderList();
        this.current = null;
        if (room) this.select(room);
        else this.renderPane();
        document.body.classList.toggle("show-room", showingRoom && !!room);
    }

    // logout signs out (revoked: the server already did) and forgets the
    // session here; once, whatever asks again meanwhile.
    private async logout(revoked = false): Promise<void> {
        if (this.closed) return;
        this.closed = true;
        this.security.stop();
        clearInterval(this.retryTimer);
        this.current = null;
        this.watch(null);
        lazyAvatars.disconnect();
        forgetMedia(); // the blob: URLs of pictures and attachments
        await logout(this.client, revoked);
        this.onLogout(revoked);
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

        // The list is kept, not rebuilt: an item is redrawn only when its
        // name, badges or selection changed, and moved only when the order
        // did (room switches stay fast with hundreds of rooms).
        if (joined.length === 0) {
            clear(this.list);
            this.items.clear();
            this.list.appendChild(h("li", { className: "empty" }, t("noRooms")));
            return;
        }
        this.list.querySelector(".empty")?.remove();
        const keep = new Set<string>();
        const direct = (this.client.getAccountData(EventType.Direct)?.getContent() ?? {}) as Record<string, unknown>;
        const dms = new Set(Object.values(direct).flatMap((ids) => (Array.isArray(ids) ? ids : [])));
        let prev: Element | null = null;
        for (const room of joined) {
            keep.add(room.roomId);
            const total = room.getUnreadNotificationCount(NotificationCountType.Total);
            const hl = room.getUnreadNotificationCount(NotificationCountType.Highlight);
            const selected = room === this.current;
            const avatar = this.roomAvatar(room, dms);
            const sig = `${room.name}\u0000${total}\u0000${hl}\u0000${selected}\u0000${currentLang()}\u0000${avatar.sig}`;
            let item = this.items.get(room.roomId);
            if (!item || item.sig !== sig) {
                const li = h(
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
                        avatar.el(),
                        h("span", { className: "name" }, room.name),
                        hl > 0
                            ? h("span", { className: "badge highlight", "aria-label": t("mentions", hl) }, hl)
                            : total > 0
                              ? h("span", { className: "badge", "aria-label": t("unread", total) }, total)
                              : null,
                    ),
                );
                const focused = item?.li.contains(document.activeElement);
                if (item) item.li.replaceWith(li);
                item = { li, sig };
                this.items.set(room.roomId, item);
                if (focused) li.querySelector("button")?.focus();
            }
            const want: Element | null = prev ? prev.nextElementSibling : this.list.firstElementChild;
            if (want !== item.li) this.list.insertBefore(item.li, want);
            prev = item.li;
        }
        for (const [id, item] of this.items) {
            if (!keep.has(id)) {
                item.li.remove();
                this.items.delete(id);
            }
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

    // openWhenKnown opens a room as soon as sync has brought it (joined),
    // or gives up after a minute.
    private openWhenKnown(roomId: string): Promise<void> {
        return new Promise((resolve) => {
            const done = () => {
                this.client.off(ClientEvent.Room, check);
                this.client.off(RoomEvent.MyMembership, check);
                this.client.off(ClientEvent.Sync, check);
                clearTimeout(timer);
                resolve();
            };
            const check = () => {
                const room = this.client.getRoom(roomId);
                if (room && room.getMyMembership() === KnownMembership.Join) {
                    done();
                    this.select(room);
                }
            };
            const timer = setTimeout(done, 60000);
            this.client.on(ClientEvent.Room, check);
            this.client.on(RoomEvent.MyMembership, check);
            this.client.on(ClientEvent.Sync, check);
            check();
        });
    }

    // ---- the open conversation ----

    select(room: Room): void {
        if (this.current === room) {
            // Back on a phone-sized screen, then the same room again.
            document.body.classList.add("show-room");
            this.markRead();
            return;
        }
        this.current = room;
        this.showMembers = false; // the member list is opened per room
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
        this.main = this.threadCompose = null;
        this.threadRoot = null;
        this.threadTimelineEl = null;
        const room = this.current;
        this.watch(room);
        if (!room) {
            this.pane.appendChild(h("p", { className: "placeholder" }, t("selectRoom")));
            return;
        }
        const encrypted = this.client.isRoomEncrypted(room.roomId);
        this.membersPanel = h("aside", { className: "members", "aria-labelledby": "members-title", hidden: !this.showMembers });
        this.threadPanel = h("aside", { className: "thread-panel", "aria-labelledby": "thread-title", hidden: true });
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
                h(
                    "button",
                    {
                        type: "button",
                        className: "count",
                        "aria-expanded": String(this.showMembers),
                        onclick: (e: Event) => {
                            this.showMembers = !this.showMembers;
                            if (this.showMembers) this.closeThread(false);
                            (e.currentTarget as HTMLElement).setAttribute("aria-expanded", String(this.showMembers));
                            this.renderMembers();
                        },
                    },
                    t("members", room.getJoinedMemberCount()),
                ),
            ),
        );
        this.olderButton = h("button", { type: "button", className: "older", onclick: () => void this.older() }, t("loadOlder"));
        this.timelineEl = h("ol", { className: "timeline", role: "log", "aria-labelledby": "room-title", "aria-live": "polite" });
        // A column-reverse scroller stays anchored at its bottom: what grows
        // later (a preview decoded, a message decrypted, a page of history
        // above) never pushes the newest messages out of view.
        h("div", { className: "scroller" }, this.timelineEl, this.olderButton);
        this.typingEl = h("p", { className: "typing", "aria-live": "polite" });
        this.pane.appendChild(
            h(
                "div",
                { className: "room-body" },
                h("div", { className: "room-main" }, this.timelineEl.parentElement, this.typingEl, this.composer(room, null)),
                this.membersPanel,
                this.threadPanel,
            ),
        );
        this.renderTimeline(true);
        this.renderMembers();
        this.renderTyping();
    }

    // ---- members: list, invite, leave ----

    private renderMembers(): void {
        const room = this.current;
        const panel = this.membersPanel;
        if (!room || !panel) return;
        panel.hidden = !this.showMembers;
        if (!this.showMembers) return;
        clear(panel);
        const invite = h("input", { id: "invite-user", autocapitalize: "none", spellcheck: "false", required: true });
        const status = h("p", { className: "error", role: "alert" });
        const members = room.getMembers().sort((a, b) => a.name.localeCompare(b.name));
        panel.append(
            h(
                "div",
                { className: "members-head" },
                h("h3", { id: "members-title" }, t("members", room.getJoinedMemberCount())),
                h(
                    "button",
                    {
                        type: "button",
                        "aria-label": t("closeMembers"),
                        onclick: () => {
                            this.showMembers = false;
                            this.pane.querySelector("button.count")?.setAttribute("aria-expanded", "false");
                            this.renderMembers();
                            this.pane.querySelector<HTMLButtonElement>("button.count")?.focus();
                        },
                    },
                    "×",
                ),
            ),
            h(
                "ul",
                {},
                members
                    .filter((m) => m.membership === "join" || m.membership === "invite")
                    .map((m) =>
                        h(
                            "li",
                            {},
                            h("span", { className: "name" }, m.name),
                            m.name !== m.userId && h("span", { className: "uid" }, m.userId),
                            m.membership === "invite" && h("span", { className: "tag" }, t("invitedTag")),
                            m.powerLevel >= 100 && h("span", { className: "tag" }, t("adminTag")),
                        ),
                    ),
            ),
            h(
                "form",
                {
                    onsubmit: async (e: Event) => {
                        e.preventDefault();
                        status.textContent = "";
                        try {
                            await this.client.invite(room.roomId, invite.value.trim());
                            invite.value = "";
                        } catch (err) {
                            status.textContent = t("error", errorText(err));
                        }
                    },
                },
                h("label", { for: "invite-user" }, t("inviteSomeone", serverName())),
                invite,
                status,
                h("button", { type: "submit" }, t("invite")),
            ),
            h(
                "button",
                {
                    type: "button",
                    className: "danger",
                    onclick: async () => {
                        if (!confirm(t("leaveConfirm", room.name))) return;
                        try {
                            await this.client.leave(room.roomId);
                            this.current = null;
                            document.body.classList.remove("show-room");
                            this.renderPane();
                            this.queueList();
                        } catch (err) {
                            this.fail(err);
                        }
                    },
                },
                t("leave"),
            ),
        );
    }

    private renderTyping(): void {
        const room = this.current;
        if (!room || !this.typingEl) return;
        const me = this.client.getUserId();
        const names = room
            .getMembers()
            .filter((m) => m.typing && m.userId !== me)
            .map((m) => m.name);
        this.typingEl.textContent = names.length ? t("typing", names.join(", ")) : "";
    }

    private queueTimeline(stick: boolean): void {
        if (this.timelineQueued) return;
        this.timelineQueued = true;
        requestAnimationFrame(() => {
            this.timelineQueued = false;
            this.renderTimeline(stick);
            this.renderThreadTimeline(stick);
        });
    }

    private renderTimeline(stickToBottom: boolean): void {
        const room = this.current;
        const ol = this.timelineEl;
        if (!room || !ol) return;
        const scroller = ol.parentElement!;
        const top = scroller.scrollTop; // distance from the bottom (column-reverse)
        const focused = (document.activeElement as HTMLElement | null)?.closest?.(".event")?.getAttribute("data-event-id");
        clear(ol);
        const events = room.getLiveTimeline().getEvents();
        const reactions = this.reactions(events);
        const me = this.client.getUserId();
        // My newest message, for "read by".
        const lastMine = [...events].reverse().find((e) => e.getSender() === me && isMessage(e));
        for (const ev of events) {
            const li = this.renderEvent(room, ev, reactions.get(ev.getId() ?? ""), this.main, false);
            if (!li) continue;
            if (ev === lastMine) {
                const readers = room
                    .getUsersReadUpTo(ev)
                    .filter((u) => u !== me)
                    .map((u) => room.getMember(u)?.name ?? u);
                if (readers.length) li.appendChild(h("span", { className: "receipt" }, t("readBy", readers.join(", "))));
            }
            ol.appendChild(li);
        }
        // The header's member count (it said "1" in a new DM until the pane
        // was redrawn; the count comes with sync's room summary).
        const count = this.pane.querySelector(".room-header button.count");
        const joined = t("members", room.getJoinedMemberCount());
        if (count && count.textContent !== joined) count.textContent = joined;
        if (this.olderButton) {
            const more =
                !!room.getLiveTimeline().getPaginationToken(EventTimeline.BACKWARDS) && !events.some((e) => e.getType() === EventType.RoomCreate);
            this.olderButton.disabled = !more;
            this.olderButton.textContent = more ? t("loadOlder") : t("noOlder");
        }
        scroller.scrollTop = stickToBottom && Math.abs(top) < 40 ? 0 : top;
        if (focused) ol.querySelector<HTMLElement>(`[data-event-id="${CSS.escape(focused)}"] .actions button`)?.focus();
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

    // reactions gathers the reactions among events, per target event and key.
    private reactions(events: MatrixEvent[]): Map<string, Map<string, { count: number; mine?: string }>> {
        const reactions = new Map<string, Map<string, { count: number; mine?: string }>>();
        const me = this.client.getUserId();
        for (const ev of events) {
            if (ev.getType() !== EventType.Reaction || ev.isRedacted()) continue;
            const rel = ev.getContent()["m.relates_to"];
            if (rel?.rel_type !== "m.annotation" || typeof rel.key !== "string" || typeof rel.event_id !== "string") continue;
            const byKey = reactions.get(rel.event_id) ?? new Map();
            const r = byKey.get(rel.key) ?? { count: 0 };
            r.count++;
            if (ev.getSender() === me) r.mine = ev.getId();
            byKey.set(rel.key, r);
            reactions.set(rel.event_id, byKey);
        }
        return reactions;
    }

    // ---- threads ----
    // The SDK's thread support (threadSupport) keeps thread replies out of
    // the room's timeline, in a Thread per root, filled from /relations and
    // sync; the root shows its reply count, and the thread opens beside the
    // timeline (over it on a phone-sized screen).

    // watch follows the open room's threads (the SDK emits their changes on
    // the room, not the client).
    private watch(room: Room | null): void {
        if (this.watched === room) return;
        for (const name of THREAD_EVENTS) this.watched?.off(name as never, this.onThreadChange as never);
        this.watched = room;
        for (const name of THREAD_EVENTS) room?.on(name as never, this.onThreadChange as never);
    }

    private onThreadChange = (): void => this.queueTimeline(false);

    // threadEvents are the loaded events of the open thread, root excluded.
    private threadEvents(room: Room): MatrixEvent[] {
        if (!this.threadRoot) return [];
        const thread = room.getThread(this.threadRoot);
        return thread ? thread.liveTimeline.getEvents().filter((e) => e.getId() !== this.threadRoot) : [];
    }

    private openThread(rootId: string): void {
        const room = this.current;
        const panel = this.threadPanel;
        if (!room || !panel) return;
        if (this.threadRoot === rootId) {
            this.threadCompose?.input.focus();
            return;
        }
        this.showMembers = false;
        this.renderMembers();
        this.pane.querySelector("button.count")?.setAttribute("aria-expanded", "false");
        this.threadRoot = rootId;
        // A new thread: the SDK places our first reply (local echo, then
        // remote echo) only in a Thread that exists (as Element does).
        const rootEvent = room.findEventById(rootId);
        if (!room.getThread(rootId) && rootEvent) room.createThread(rootId, rootEvent, [], true);
        clear(panel);
        panel.hidden = false;
        this.threadOlder = h("button", { type: "button", className: "older", onclick: () => void this.olderInThread() }, t("loadOlderReplies"));
        this.threadTimelineEl = h("ol", { className: "timeline thread-timeline", role: "log", "aria-labelledby": "thread-title", "aria-live": "polite" });
        panel.append(
            h(
                "header",
                { className: "thread-head" },
                h("h3", { id: "thread-title" }, t("threadTitle")),
                h("button", { type: "button", "aria-label": t("closeThread"), onclick: () => this.closeThread(true) }, "×"),
            ),
            h("div", { className: "scroller" }, this.threadTimelineEl, this.threadOlder),
            this.composer(room, rootId),
        );
        panel.onkeydown = (e: KeyboardEvent) => {
            if (e.key === "Escape" && !this.threadCompose?.replyTo && !this.threadCompose?.editing) this.closeThread(true);
        };
        this.renderThreadTimeline(true);
        this.queueTimeline(false); // the root's "N replies" is now expanded
        this.threadCompose?.input.focus();
    }

    private closeThread(focusRoot: boolean): void {
        const root = this.threadRoot;
        this.threadRoot = null;
        this.threadCompose = null;
        this.threadTimelineEl = this.threadOlder = null;
        if (this.threadPanel) {
            clear(this.threadPanel);
            this.threadPanel.hidden = true;
        }
        const summary = root ? this.timelineEl?.querySelector<HTMLElement>(`[data-event-id="${CSS.escape(root)}"] .thread-summary`) : null;
        summary?.setAttribute("aria-expanded", "false");
        if (focusRoot) summary?.focus();
    }

    private renderThreadTimeline(stickToBottom: boolean): void {
        const room = this.current;
        const ol = this.threadTimelineEl;
        const rootId = this.threadRoot;
        if (!room || !ol || !rootId) return;
        const thread = room.getThread(rootId);
        const root = thread?.rootEvent ?? room.findEventById(rootId);
        const events = this.threadEvents(room);
        const scroller = ol.parentElement!;
        const top = scroller.scrollTop;
        const focused = (document.activeElement as HTMLElement | null)?.closest?.(".event")?.getAttribute("data-event-id");
        clear(ol);
        // Reactions to the root are in the room's timeline, to replies in the thread's.
        const reactions = this.reactions([...room.getLiveTimeline().getEvents(), ...events]);
        for (const ev of root ? [root, ...events] : events) {
            const li = this.renderEvent(room, ev, reactions.get(ev.getId() ?? ""), this.threadCompose, true);
            if (!li) continue;
            if (ev === root) li.classList.add("thread-root");
            ol.appendChild(li);
        }
        if (this.threadOlder) {
            const loading = !!thread && !thread.initialEventsFetched;
            const more = loading || !!thread?.liveTimeline.getPaginationToken(EventTimeline.BACKWARDS);
            this.threadOlder.disabled = !more || loading;
            this.threadOlder.textContent = loading ? t("loadingThread") : more ? t("loadOlderReplies") : t("threadStart");
        }
        scroller.scrollTop = stickToBottom && Math.abs(top) < 40 ? 0 : top;
        if (focused) ol.querySelector<HTMLElement>(`[data-event-id="${CSS.escape(focused)}"] .actions button`)?.focus();
        // Read: a threaded receipt for the thread's newest reply.
        const last = [...events].reverse().find((e) => e.getId() && !e.getId()!.startsWith("~") && !e.status);
        const key = `${room.roomId}\u0000${rootId}`;
        if (last && document.visibilityState === "visible" && this.receiptSent.get(key) !== last.getId()) {
            this.receiptSent.set(key, last.getId()!);
            this.client.sendReadReceipt(last).catch(() => this.receiptSent.delete(key));
        }
    }

    private async olderInThread(): Promise<void> {
        const thread = this.threadRoot ? this.current?.getThread(this.threadRoot) : null;
        if (!thread || !this.threadOlder) return;
        this.threadOlder.disabled = true;
        try {
            await this.client.paginateEventTimeline(thread.liveTimeline, { backwards: true, limit: PAGE });
        } catch (e) {
            this.fail(e);
        }
        this.renderThreadTimeline(false);
    }

    // threadRelation is the m.relates_to of a message in the thread rooted
    // at rootId: rel_type m.thread, and an m.in_reply_to that is either the
    // message replied to (is_falling_back false) or, as a fallback for
    // clients without threads, the thread's latest message (is_falling_back
    // true). Client-Server API, "Threading" (fallback for unthreaded clients).
    private threadRelation(rootId: string, replyTo: MatrixEvent | null): Record<string, unknown> {
        if (replyTo) return { rel_type: "m.thread", event_id: rootId, is_falling_back: false, "m.in_reply_to": { event_id: replyTo.getId()! } };
        const latest = this.current
            ?.getThread(rootId)
            ?.lastReply((e) => !e.status && e.isRelation("m.thread"))
            ?.getId();
        return { rel_type: "m.thread", event_id: rootId, is_falling_back: true, "m.in_reply_to": { event_id: latest ?? rootId } };
    }

    private renderEvent(
        room: Room,
        ev: MatrixEvent,
        reactions: Map<string, { count: number; mine?: string }> | undefined,
        compose: Compose | null,
        inThreadView: boolean,
    ): HTMLLIElement | null {
        const sender = ev.getSender() ?? "";
        const name = room.getMember(sender)?.name ?? sender;
        const type = ev.getType();
        const time = new Date(ev.getTs()).toLocaleTimeString(currentLang(), { hour: "2-digit", minute: "2-digit" });
        const meta = (cls: string, ...body: (Node | string | null)[]) =>
            h(
                "li",
                { className: "event " + cls, "data-event-id": ev.getId() ?? "" },
                h("span", { className: "sender" }, this.avatar(sender, name, room.getMember(sender)?.getMxcAvatarUrl()), name),
                h("time", { dateTime: new Date(ev.getTs()).toISOString() }, time),
                h("div", { className: "body" }, ...body),
            );
        if (type === EventType.Reaction || type === EventType.RoomRedaction) return null;
        const rel = ev.getWireContent()["m.relates_to"] ?? ev.getContent()["m.relates_to"];
        if (rel?.rel_type === "m.replace") return null; // shown as the edited message
        if (ev.isRedacted()) return type === EventType.RoomMessage || type === EventType.RoomMessageEncrypted ? meta("redacted", t("redacted")) : null;
        if (ev.isBeingDecrypted() || ev.shouldAttemptDecryption()) return meta("pending-decrypt", t("decrypting"));
        if (ev.isDecryptionFailure()) return meta("utd", t("cannotDecrypt", reason(ev)));
        if (type === EventType.RoomMessage) {
            const c = ev.getContent();
            if (typeof c.body !== "string") return null;
            const mine = sender === this.client.getUserId();
            const li = meta("message" + (mine ? " mine" : ""), null);
            const body = li.querySelector(".body")!;
            const replyId = c["m.relates_to"]?.["m.in_reply_to"]?.event_id ?? rel?.["m.in_reply_to"]?.event_id;
            // In a thread, the reply fallback to the thread's latest message is not a reply.
            if (replyId && !(rel?.rel_type === "m.thread" && rel.is_falling_back)) {
                const orig = room.findEventById(replyId);
                const who = orig ? (room.getMember(orig.getSender() ?? "")?.name ?? orig.getSender()) : "";
                const text = orig ? (orig.isDecryptionFailure() ? t("cannotDecrypt", "") : summary(orig)) : t("replyUnknown");
                body.appendChild(h("blockquote", { className: "reply-quote" }, who && h("strong", {}, who + " "), text));
            }
            const msgtype = c.msgtype;
            if (msgtype === "m.image" || msgtype === "m.file" || msgtype === "m.video" || msgtype === "m.audio") {
                body.appendChild(this.attachment(ev, c));
            } else {
                body.appendChild(h("span", { className: "text" }, msgtype === "m.emote" ? `* ${name} ${stripFallback(c.body)}` : stripFallback(c.body)));
            }
            if (ev.replacingEventId()) body.appendChild(h("span", { className: "edited" }, " " + t("edited")));
            if (reactions?.size) {
                body.appendChild(
                    h(
                        "div",
                        { className: "reactions" },
                        [...reactions].map(([key, r]) =>
                            h(
                                "button",
                                {
                                    type: "button",
                                    className: r.mine ? "mine" : "",
                                    "aria-pressed": String(!!r.mine),
                                    "aria-label": t("reactionCount", key, r.count),
                                    onclick: () => void this.toggleReaction(room, ev, key, r.mine),
                                },
                                `${key} ${r.count}`,
                            ),
                        ),
                    ),
                );
            }
            const status = ev.status;
            if (status === EventStatus.NOT_SENT) li.appendChild(h("span", { className: "status failed" }, t("sendFailed")));
            else if (status && status !== EventStatus.SENT) li.appendChild(h("span", { className: "status" }, t("sending")));
            else li.appendChild(this.actions(room, ev, mine, typeof c.msgtype === "string" && c.msgtype.startsWith("m.") && !c.file && !c.url, compose, inThreadView));
            // A thread root in the room's timeline: its reply count opens the thread.
            const thread = inThreadView ? null : room.getThread(ev.getId() ?? "");
            if (thread && thread.length > 0) {
                li.insertBefore(
                    h(
                        "button",
                        { type: "button", className: "thread-summary link", "aria-expanded": String(this.threadRoot === ev.getId()), onclick: () => this.openThread(ev.getId()!) },
                        thread.length === 1 ? t("oneReply") : t("replies", thread.length),
                    ),
                    li.querySelector(".actions"),
                );
            }
            return li;
        }
        if (type === EventType.RoomMember) {
            const m = ev.getContent().membership;
            const prev = ev.getPrevContent().membership;
            const target = ev.getStateKey() ?? "";
            const targetName = room.getMember(target)?.name ?? target;
            if (m === "join" && prev !== "join") return meta("state", t("joined", targetName));
            if (m === "leave" && prev === "join" && target === sender) return meta("state", t("left", targetName));
            if (m === "leave" && prev === "invite" && target === sender) return meta("state", t("declined", targetName));
            if (m === "invite") return meta("state", t("invited", name, targetName));
            return null;
        }
        if (type === EventType.RoomCreate) return meta("state", t("createdRoom", name));
        return null;
    }

    private attachment(ev: MatrixEvent, c: Record<string, any>): HTMLElement {
        const id = ev.getId() ?? "";
        const nameText = String(c.filename ?? c.body);
        const mimetype = String(c.info?.mimetype ?? "");
        const box = h("div", { className: "attachment" });
        if (c.msgtype === "m.image" && previewable.has(mimetype)) {
            const img = h("img", { alt: nameText, className: "preview", width: c.info?.w, height: c.info?.h });
            box.appendChild(img);
            blobUrl(this.client, id, c).then(
                (u) => (img.src = u),
                () => box.appendChild(h("span", { className: "error" }, t("attachmentFailed"))),
            );
        }
        const link = h("a", { className: "file", download: nameText }, `${nameText}${c.info?.size ? ` (${size(c.info.size)})` : ""}`);
        box.appendChild(link);
        blobUrl(this.client, id, c).then(
            (u) => (link.href = u),
            () => link.classList.add("broken"),
        );
        return box;
    }

    private actions(room: Room, ev: MatrixEvent, mine: boolean, editable: boolean, compose: Compose | null, inThreadView: boolean): HTMLElement {
        const bar = h("div", { className: "actions", role: "toolbar", "aria-label": t("messageActions") });
        for (const key of QUICK_REACTIONS) {
            bar.appendChild(
                h("button", { type: "button", "aria-label": t("react", key), onclick: () => void this.toggleReaction(room, ev, key, undefined) }, key),
            );
        }
        bar.appendChild(h("button", { type: "button", onclick: () => this.startReply(ev, compose) }, t("reply")));
        if (!inThreadView && ev.getId() && !ev.getId()!.startsWith("~") && !ev.threadRootId) {
            bar.appendChild(h("button", { type: "button", onclick: () => this.openThread(ev.getId()!) }, t("openThread")));
        }
        if (mine && editable) bar.appendChild(h("button", { type: "button", onclick: () => this.startEdit(ev, compose) }, t("edit")));
        if (mine || (room.currentState.maySendRedactionForEvent(ev, this.client.getUserId()!) ?? false)) {
            bar.appendChild(
                h(
                    "button",
                    {
                        type: "button",
                        onclick: () => {
                            if (confirm(t("deleteConfirm"))) void this.client.redactEvent(room.roomId, ev.getId()!).catch((e) => this.fail(e));
                        },
                    },
                    t("delete"),
                ),
            );
        }
        return bar;
    }

    private async toggleReaction(room: Room, ev: MatrixEvent, key: string, mine: string | undefined): Promise<void> {
        try {
            if (!mine) {
                // Already reacted with this key: the click removes it.
                const thread = ev.threadRootId ? room.getThread(ev.threadRootId) : null;
                mine = [...room.getLiveTimeline().getEvents(), ...(thread?.liveTimeline.getEvents() ?? [])]
                    .find((e) => {
                        const r = e.getContent()["m.relates_to"];
                        return e.getType() === EventType.Reaction && !e.isRedacted() && e.getSender() === this.client.getUserId() && r?.event_id === ev.getId() && r?.key === key;
                    })
                    ?.getId();
            }
            if (mine) await this.client.redactEvent(room.roomId, mine);
            else
                await this.client.sendEvent(room.roomId, EventType.Reaction, {
                    "m.relates_to": { rel_type: "m.annotation" as never, event_id: ev.getId()!, key },
                });
        } catch (e) {
            this.fail(e);
        }
    }

    private startReply(ev: MatrixEvent, c: Compose | null): void {
        if (!c) return;
        c.editing = null;
        c.replyTo = ev;
        this.renderComposerContext(c);
        c.input.focus();
    }

    private startEdit(ev: MatrixEvent, c: Compose | null): void {
        if (!c) return;
        c.replyTo = null;
        c.editing = ev;
        c.input.value = ev.getContent().body ?? "";
        this.renderComposerContext(c);
        c.input.focus();
    }

    private renderComposerContext(c: Compose): void {
        const el = c.context;
        clear(el);
        const target = c.replyTo ?? c.editing;
        el.hidden = !target;
        if (!target) return;
        const room = this.current!;
        const who = room.getMember(target.getSender() ?? "")?.name ?? target.getSender();
        el.append(
            h("span", {}, c.replyTo ? t("replyingTo", who ?? "") : t("editing"), " ", h("q", {}, summary(target))),
            h(
                "button",
                {
                    type: "button",
                    "aria-label": t("cancel"),
                    onclick: () => {
                        if (c.editing) c.input.value = "";
                        c.replyTo = c.editing = null;
                        this.renderComposerContext(c);
                        c.input.focus();
                    },
                },
                "×",
            ),
        );
    }

    // markRead sends a read receipt for the newest event of the open room when
    // the page is visible, which also clears its badge.
    private markRead(): void {
        const room = this.current;
        if (!room || document.visibilityState !== "visible") return;
        // On a phone-sized screen showing the list, the room is not seen.
        if (!document.body.classList.contains("show-room") && matchMedia(NARROW).matches) return;
        const events = room.getLiveTimeline().getEvents();
        const last = [...events].reverse().find((e) => e.getId() && !e.getId()!.startsWith("~") && !e.status);
        if (!last || this.receiptSent.get(room.roomId) === last.getId()) return;
        this.receiptSent.set(room.roomId, last.getId()!);
        this.client.sendReadReceipt(last).catch(() => this.receiptSent.delete(room.roomId));
    }

    // composer is the room's message field (threadId null) or the open
    // thread's, which sends m.thread relations.
    private composer(room: Room, threadId: string | null): HTMLFormElement {
        const ids = threadId ? { input: "thread-composer", attach: "thread-attach", label: t("threadMessage") } : { input: "composer", attach: "attach", label: t("message") };
        const input = h("textarea", { id: ids.input, name: "message", rows: 1, placeholder: ids.label });
        const c: Compose = { input, context: h("div", { className: "composer-context", hidden: true }), replyTo: null, editing: null };
        if (threadId) this.threadCompose = c;
        else this.main = c;
        let typingSent = 0;
        // One typing request at a time, in order: a "stopped" must not
        // overtake the "typing" it ends.
        let typingChain: Promise<unknown> = Promise.resolve();
        const typing = (on: boolean) => {
            typingChain = typingChain.then(() => this.client.sendTyping(room.roomId, on, on ? 6000 : 0)).catch(() => {});
        };
        const stopTyping = () => {
            if (typingSent) typing(false);
            typingSent = 0;
        };
        const send = async () => {
            const body = input.value.trim();
            if (!body) return;
            input.value = "";
            stopTyping();
            const sc = input.closest(".room-main, .thread-panel")?.querySelector(".scroller");
            if (sc) sc.scrollTop = 0; // to the newest
            const reply = c.replyTo;
            const edit = c.editing;
            c.replyTo = c.editing = null;
            this.renderComposerContext(c);
            try {
                if (edit) {
                    await this.client.sendMessage(room.roomId, threadId, {
                        msgtype: "m.text",
                        body: `* ${body}`,
                        "m.new_content": { msgtype: "m.text", body },
                        "m.relates_to": { rel_type: "m.replace", event_id: edit.getId()! },
                    } as never);
                } else if (threadId) {
                    await this.client.sendMessage(room.roomId, threadId, { msgtype: "m.text", body, "m.relates_to": this.threadRelation(threadId, reply) } as never);
                } else if (reply) {
                    await this.client.sendMessage(room.roomId, {
                        msgtype: "m.text",
                        body,
                        "m.relates_to": { "m.in_reply_to": { event_id: reply.getId()! } },
                    } as never);
                } else {
                    await this.client.sendTextMessage(room.roomId, body);
                }
            } catch (e) {
                this.fail(e);
            }
        };
        input.addEventListener("keydown", (e) => {
            if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
                e.preventDefault();
                void send();
            } else if (e.key === "Escape" && (c.replyTo || c.editing)) {
                if (c.editing) input.value = "";
                c.replyTo = c.editing = null;
                this.renderComposerContext(c);
            }
        });
        input.addEventListener("input", () => {
            // Typing notifications (m.typing): renewed every few seconds while
            // typing, stopped on send or when the field is emptied.
            if (!input.value) return stopTyping();
            if (Date.now() - typingSent > 4000) {
                typingSent = Date.now();
                typing(true);
            }
        });
        input.addEventListener("blur", stopTyping);
        const fileInput = h("input", {
            type: "file",
            id: ids.attach,
            className: "visually-hidden",
            multiple: true,
            onchange: async () => {
                const files = [...(fileInput.files ?? [])];
                fileInput.value = "";
                for (const f of files) {
                    if (f.size > MAX_FILE) {
                        this.fail(new Error(t("fileTooLarge", f.name)));
                        continue;
                    }
                    try {
                        await sendFile(this.client, room.roomId, f, threadId, threadId ? this.threadRelation(threadId, null) : undefined);
                    } catch (e) {
                        this.fail(e);
                    }
                }
            },
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
            c.context,
            h(
                "div",
                { className: "composer-row" },
                fileInput,
                h("label", { for: ids.attach, className: "attach", title: t("attach") }, h("span", { "aria-hidden": "true" }, "📎"), h("span", { className: "visually-hidden" }, t("attach"))),
                h("label", { for: ids.input, className: "visually-hidden" }, ids.label),
                input,
                h("button", { type: "submit", className: "primary" }, t("send")),
            ),
        );
    }

    private fail(e: unknown): void {
        const box = h("p", { className: "toast", role: "alert" }, t("error", errorText(e)));
        this.root.appendChild(box);
        setTimeout(() => box.remove(), 6000);
    }
}

// initial is the first letter of a name (user IDs and aliases without their sigil).
function initial(name: string): string {
    const first = Array.from(name.replace(/^[@#!+]/, "").trim())[0];
    return first ? first.toLocaleUpperCase() : "?";
}

// colourIndex picks one of the eight avatar colours (style.css .av0-.av7)
// from an ID: a small string hash, the same in every session.
const AVATAR_COLOURS = 8;
export function colourIndex(id: string): number {
    let h = 0;
    for (let i = 0; i < id.length; i++) h = (Math.imul(h, 31) + id.charCodeAt(i)) | 0;
    return Math.abs(h) % AVATAR_COLOURS;
}

// lazyAvatars fetches thumbnails when their avatar scrolls into view: a list
// of hundreds of rooms asks only for those on screen.
const lazyAvatars = (() => {
    const pending = new WeakMap<Element, () => void>();
    let io: IntersectionObserver | null = null;
    return {
        watch(el: Element, load: () => void): void {
            io ??= new IntersectionObserver((entries) => {
                for (const e of entries) {
                    if (!e.isIntersecting) continue;
                    io!.unobserve(e.target);
                    pending.get(e.target)?.();
                    pending.delete(e.target);
                }
            });
            pending.set(el, load);
            io.observe(el);
        },
        disconnect(): void {
            io?.disconnect();
            io = null;
        },
    };
})();

// A composer's state: what the next message replies to or edits.
interface Compose {
    input: HTMLTextAreaElement;
    context: HTMLElement;
    replyTo: MatrixEvent | null;
    editing: MatrixEvent | null;
}

// The room events by which the SDK tells of its threads' changes.
const THREAD_EVENTS = [ThreadEvent.New, ThreadEvent.Update, ThreadEvent.NewReply, ThreadEvent.Delete, RoomEvent.TimelineReset];

function errorText(e: unknown): string {
    if (e && typeof e === "object") {
        const data = (e as { data?: { error?: string } }).data;
        if (data?.error) return data.error;
        if ("message" in e) return String((e as Error).message);
    }
    return String(e);
}

function isMessage(ev: MatrixEvent): boolean {
    if (ev.getType() !== EventType.RoomMessage || ev.isRedacted()) return false;
    return ev.getWireContent()["m.relates_to"]?.rel_type !== "m.replace";
}

// stripFallback removes the quoted lines older clients put before a reply.
function stripFallback(body: string): string {
    if (!body.startsWith("> ")) return body;
    const i = body.indexOf("\n\n");
    return i >= 0 ? body.slice(i + 2) : body;
}

function summary(ev: MatrixEvent): string {
    const c = ev.getContent();
    const body = typeof c.body === "string" ? stripFallback(c.body) : "";
    return body.length > 80 ? body.slice(0, 79) + "…" : body;
}

function size(n: number): string {
    if (n < 1024) return `${n} B`;
    if (n < 1 << 20) return `${(n / 1024).toFixed(0)} KB`;
    return `${(n / (1 << 20)).toFixed(1)} MB`;
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
