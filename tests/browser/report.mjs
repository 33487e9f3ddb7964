// Renders an `epitome analyze` report.html in Chromium at phone and desktop widths and checks
// that it is self-contained (no request leaves the file), that nothing is wider than a phone
// screen except inside the scrolling table containers, and that every chart drew.
// Usage: node report.mjs REPORT.html [SCREENSHOT.png]
import { chromium } from "playwright-core";
import { pathToFileURL } from "node:url";

const [file, screenshot] = process.argv.slice(2);
const url = pathToFileURL(file).href;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let failed = false;
const check = (ok, what) => { console.log(`${ok ? "ok" : "FAILED"}: ${what}`); if (!ok) failed = true; };
try {
  for (const [name, viewport] of [["phone", { width: 390, height: 844 }], ["desktop", { width: 1200, height: 900 }]]) {
    const page = await browser.newPage({ viewport });
    const requests = [];
    page.on("request", (r) => { if (r.url() !== url) requests.push(r.url()); });
    await page.goto(url);
    check(requests.length === 0, `${name}: no request besides the file itself (${requests.join(", ")})`);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= viewport.width, `${name}: page width ${width}px fits the ${viewport.width}px screen`);
    const charts = await page.$$eval("svg", (svgs) => svgs.map((s) => s.getBoundingClientRect().height));
    check(charts.length >= 6 && charts.every((h) => h > 40), `${name}: ${charts.length} charts drawn`);
    const smallest = await page.$$eval("svg text", (ts) => Math.min(...ts.map((t) => t.getBoundingClientRect().height)));
    check(smallest >= 7, `${name}: chart text at least 7px high (${smallest.toFixed(1)}px)`);
    const body = await page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
    check(body >= 16, `${name}: body text ${body}px`);
    if (name === "phone" && screenshot) {
      await page.screenshot({ path: screenshot, fullPage: true });
      console.log(`screenshot: ${screenshot}`);
    }
    await page.close();
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
