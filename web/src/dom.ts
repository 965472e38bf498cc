// A very small DOM builder: h("button", { onclick }, "text").

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Attrs = Record<string, string | number | boolean | ((e: any) => unknown) | undefined | null>;
export type Child = Node | string | number | null | undefined | false;
type Children = Child | Children[];

export function h<K extends keyof HTMLElementTagNameMap>(
    tag: K,
    attrs: Attrs = {},
    ...children: Children[]
): HTMLElementTagNameMap[K] {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith("on") && typeof v === "function") {
            el.addEventListener(k.slice(2), v as EventListener);
        } else if (k === "className") {
            el.className = String(v);
        } else if (v === true) {
            el.setAttribute(k, "");
        } else {
            el.setAttribute(k, String(v));
        }
    }
    append(el, children);
    return el;
}

export function append(el: Node, children: Children[]): void {
    for (const c of (children as unknown[]).flat(Infinity) as Child[]) {
        if (c === null || c === undefined || c === false) continue;
        el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
}

export function clear(el: Node): void {
    while (el.firstChild) el.removeChild(el.firstChild);
}
