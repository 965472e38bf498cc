// Builds the web client into internal/webclient/dist (or the directory given
// as the first argument), where the Go package embeds it.
//
// The build is reproducible: esbuild is pinned in package.json and the
// lockfile, nothing depends on time or on the machine, and every asset's name
// carries a hash of its content, so `make web-check` can rebuild into a
// temporary directory and compare with what is committed.
import * as esbuild from "esbuild";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.argv[2] ?? path.join(here, "../internal/webclient/dist"));
const assets = path.join(out, "assets");

const hash = (buf) => createHash("sha256").update(buf).digest("hex").slice(0, 16);

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(assets, { recursive: true });

// The crypto's WebAssembly, copied beside the bundle under a content-hashed
// name; src/matrix.ts loads it from there with initAsync before the SDK asks.
const wasm = fs.readFileSync(
    path.join(here, "node_modules/@matrix-org/matrix-sdk-crypto-wasm/pkg/matrix_sdk_crypto_wasm_bg.wasm"),
);
const wasmName = `crypto-${hash(wasm)}.wasm`;
fs.writeFileSync(path.join(assets, wasmName), wasm);

const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { app: "src/main.ts", style: "src/style.css" },
    bundle: true,
    format: "esm",
    splitting: true,
    platform: "browser",
    target: ["es2022", "chrome109", "firefox115", "safari16"],
    minify: true,
    sourcemap: false,
    legalComments: "eof",
    charset: "utf8",
    outdir: assets,
    entryNames: "[name]-[hash]",
    chunkNames: "chunk-[hash]",
    assetNames: "[name]-[hash]",
    define: {
        "process.env.NODE_ENV": '"production"',
        CRYPTO_WASM: JSON.stringify(wasmName),
    },
    metafile: true,
    logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((p) => path.relative(assets, path.resolve(here, p)));
const find = (prefix, ext) => {
    const f = outputs.find((o) => o.startsWith(prefix) && o.endsWith(ext));
    if (!f) throw new Error(`no ${prefix}*${ext} in the build`);
    return f;
};
const html = fs
    .readFileSync(path.join(here, "src/index.html"), "utf8")
    .replaceAll("%APP_JS%", `assets/${find("app-", ".js")}`)
    .replaceAll("%STYLE_CSS%", `assets/${find("style-", ".css")}`);
fs.writeFileSync(path.join(out, "index.html"), html);

// Budget (docs/benchmarks.md): JavaScript at most 600 KB gzipped, besides the wasm.
const { gzipSync } = await import("node:zlib");
let js = 0;
for (const f of outputs.filter((o) => o.endsWith(".js"))) {
    js += gzipSync(fs.readFileSync(path.join(assets, f)), { level: 9 }).length;
}
console.log(`web client built in ${path.relative(process.cwd(), out) || "."}: JavaScript ${(js / 1024).toFixed(0)} KB gzipped, wasm ${(wasm.length / 1024).toFixed(0)} KB`);
if (js > 600 * 1024) {
    console.error("JavaScript is over its 600 KB gzipped budget");
    process.exit(1);
}
