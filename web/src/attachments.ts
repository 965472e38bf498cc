// Files: encrypted attachments (Client-Server API, "Sending encrypted
// attachments": AES-256-CTR, a JWK key, SHA-256 of the ciphertext) uploaded
// to the media repository, and their download and decryption for display.
// Decrypted files exist only as blob: URLs in this page.
import type { MatrixClient } from "matrix-js-sdk";

export interface EncryptedFile {
    url: string;
    key: { kty: "oct"; key_ops: string[]; alg: "A256CTR"; k: string; ext: true };
    iv: string;
    hashes: { sha256: string };
    v: "v2";
}

const b64 = (buf: ArrayBuffer | Uint8Array): string => {
    const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s).replace(/=+$/, "");
};
const unb64 = (s: string): Uint8Array<ArrayBuffer> => {
    const std = s.replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(std + "===".slice((std.length + 3) % 4));
    const out = new Uint8Array(new ArrayBuffer(bin.length));
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
};

// encrypt returns the ciphertext and the "file" object the event carries
// (its url filled in after the upload).
export async function encrypt(plain: ArrayBuffer): Promise<{ data: ArrayBuffer; file: Omit<EncryptedFile, "url"> }> {
    const key = await crypto.subtle.generateKey({ name: "AES-CTR", length: 256 }, true, ["encrypt", "decrypt"]);
    // 64 random bits then a zero counter, as the spec asks (room for 2^64 blocks).
    const iv = new Uint8Array(16);
    crypto.getRandomValues(iv.subarray(0, 8));
    const data = await crypto.subtle.encrypt({ name: "AES-CTR", counter: iv, length: 64 }, key, plain);
    const jwk = await crypto.subtle.exportKey("jwk", key);
    const hash = await crypto.subtle.digest("SHA-256", data);
    return {
        data,
        file: {
            key: { kty: "oct", key_ops: ["encrypt", "decrypt"], alg: "A256CTR", k: jwk.k!, ext: true },
            iv: b64(iv),
            hashes: { sha256: b64(hash) },
            v: "v2",
        },
    };
}

export async function decrypt(data: ArrayBuffer, file: EncryptedFile): Promise<ArrayBuffer> {
    if (file.v !== "v2" && file.v !== undefined) throw new Error(`unsupported attachment version ${file.v}`);
    const hash = b64(await crypto.subtle.digest("SHA-256", data));
    if (hash !== file.hashes?.sha256?.replace(/=+$/, "")) throw new Error("the attachment's hash does not match");
    const key = await crypto.subtle.importKey("jwk", { ...file.key, key_ops: ["decrypt"] } as JsonWebKey, { name: "AES-CTR" }, false, ["decrypt"]);
    return crypto.subtle.decrypt({ name: "AES-CTR", counter: unb64(file.iv), length: 64 }, key, data);
}

// Images shown inline: formats browsers decode without running code (no SVG).
export const previewable = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

// send uploads a file (encrypted in encrypted rooms) and posts it, in a
// thread when threadId is given (relatesTo is then its m.thread relation).
export async function sendFile(client: MatrixClient, roomId: string, f: File, threadId: string | null = null, relatesTo?: Record<string, unknown>): Promise<void> {
    const plain = await f.arrayBuffer();
    const mimetype = f.type || "application/octet-stream";
    const info: Record<string, unknown> = { mimetype, size: f.size };
    if (previewable.has(mimetype)) {
        try {
            const bmp = await createImageBitmap(new Blob([plain], { type: mimetype }));
            info.w = bmp.width;
            info.h = bmp.height;
            bmp.close();
        } catch {
            // not decodable: sent as a file
        }
    }
    const msgtype = info.w ? "m.image" : "m.file";
    const content: Record<string, unknown> = { msgtype, body: f.name, filename: f.name, info };
    if (client.isRoomEncrypted(roomId)) {
        const { data, file } = await encrypt(plain);
        const up = await client.uploadContent(new Blob([data], { type: "application/octet-stream" }), {
            type: "application/octet-stream",
            includeFilename: false,
        });
        content.file = { ...file, url: up.content_uri };
    } else {
        const up = await client.uploadContent(new Blob([plain], { type: mimetype }), { type: mimetype, name: f.name });
        content.url = up.content_uri;
    }
    if (relatesTo) content["m.relates_to"] = relatesTo;
    await client.sendMessage(roomId, threadId, content as never);
}

const cache = new Map<string, Promise<string>>();

// blobUrl downloads (authenticated media), decrypts when needed, and returns
// a blob: URL of the right type, once per event.
export function blobUrl(client: MatrixClient, eventId: string, content: Record<string, any>): Promise<string> {
    let p = cache.get(eventId);
    if (!p) {
        p = (async () => {
            const file = content.file as EncryptedFile | undefined;
            const mxc: string | undefined = file?.url ?? content.url;
            if (typeof mxc !== "string" || !mxc.startsWith("mxc://")) throw new Error("no media URL");
            const http = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
            if (!http) throw new Error("bad media URL");
            const res = await fetch(http, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } });
            if (!res.ok) throw new Error(`download failed: ${res.status}`);
            let data = await res.arrayBuffer();
            if (file) data = await decrypt(data, file);
            const type = String(content.info?.mimetype ?? "application/octet-stream");
            // Only harmless types are given to the browser as themselves.
            const u = URL.createObjectURL(new Blob([data], { type: previewable.has(type) ? type : "application/octet-stream" }));
            if (cache.get(eventId) !== p) {
                URL.revokeObjectURL(u); // forgotten meanwhile (signed out)
                throw new Error("signed out");
            }
            return u;
        })();
        p.catch(() => cache.delete(eventId));
        cache.set(eventId, p);
    }
    return p;
}

const avatars = new Map<string, Promise<string>>();
const avatarsReady = new Map<string, string>(); // mxc → blob: URL, once fetched

// avatarUrl returns a blob: URL of a 64×64 thumbnail of an avatar (mxc://),
// fetched once per URL from the authenticated media API
// (/_matrix/client/v1/media/thumbnail) with the access token in the
// Authorization header, which an <img src> could not send.
export function avatarUrl(client: MatrixClient, mxc: string): Promise<string> {
    let p = avatars.get(mxc);
    if (!p) {
        p = (async () => {
            const http = client.mxcUrlToHttp(mxc, 64, 64, "crop", false, true, true);
            if (!http) throw new Error("bad avatar URL");
            const res = await fetch(http, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } });
            if (!res.ok) throw new Error(`avatar: ${res.status}`);
            const type = res.headers.get("Content-Type") ?? "";
            if (!previewable.has(type.split(";")[0].trim())) throw new Error(`avatar of type ${type}`);
            const u = URL.createObjectURL(await res.blob());
            if (avatars.get(mxc) !== p) {
                URL.revokeObjectURL(u); // forgotten meanwhile (signed out)
                throw new Error("signed out");
            }
            avatarsReady.set(mxc, u);
            return u;
        })();
        p.catch(() => {
            if (avatars.get(mxc) === p) avatars.delete(mxc);
        });
        avatars.set(mxc, p);
    }
    return p;
}

// cachedAvatarUrl is the blob: URL of a thumbnail already fetched, if any
// (drawn at once, without a flash of the initial).
export function cachedAvatarUrl(mxc: string): string | undefined {
    return avatarsReady.get(mxc);
}

// forgetMedia revokes every blob: URL this page made (thumbnails, decrypted
// attachments) and empties the caches: at sign-out, nothing of the session's
// media stays reachable in the page.
export function forgetMedia(): void {
    for (const u of avatarsReady.values()) URL.revokeObjectURL(u);
    avatarsReady.clear();
    avatars.clear();
    for (const p of cache.values()) p.then((u) => URL.revokeObjectURL(u), () => {});
    cache.clear();
}
