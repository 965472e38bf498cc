// The browser every web client test and the benchmark drive: Debian's
// chromium (CHROMIUM=/path overrides it) through playwright-core.
import { chromium } from "playwright-core";

export function launchChromium() {
    return chromium.launch({
        executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
        // Chromium refuses to run as root with its sandbox (CI containers).
        args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    });
}
