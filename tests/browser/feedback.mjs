// Types a response into the feedback page, waits for the debounced update, and checks that the
// levels and the highlighted characters shown are exactly what POST /v1/score answers.
// Then presses Suggest, applies a suggestion, sees the levels change as it said, and undoes it.
// Usage: node feedback.mjs BASE_URL [SCREENSHOT.png] [SUGGEST_SCREENSHOT.png]
import { chromium } from "playwright-core";

const [base, screenshot, suggestShot] = process.argv.slice(2);
const url = base.endsWith("/") ? base : base + "/";
const seeker = "I lost my job last month and since then I can't sleep. I feel like I'm letting everyone down and nobody really gets it.";
const candidates = [
  "I'm so sorry you are going through this. Losing a job is hard and I went through the same last year. How are you feeling about it now?",
  "That sounds really isolating, I understand. Have you talked to anyone about how you feel?",
  "I'm sorry. Hang in there, it gets better.",
];

async function score(response) {
  const res = await fetch(url + "v1/score", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ seeker_post: seeker, response_post: response }),
  });
  if (!res.ok) throw new Error(`API answered ${res.status}`);
  return res.json();
}

// Prefer a response for which the model marks some rationale, so that highlights are checked.
let response = candidates[0];
let api = await score(response);
for (const c of candidates) {
  const a = await score(c);
  if (["ER", "IP", "EX"].some((m) => a[m].rationales.length > 0)) { response = c; api = a; break; }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
let failed = false;
const check = (ok, what) => { console.log(`${ok ? "ok" : "FAILED"}: ${what}`); if (!ok) failed = true; };
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  const external = [];
  page.on("request", (r) => { if (!r.url().startsWith(url)) external.push(r.url()); });
  await page.goto(url);

  // Keyboard: the first Tab stops are the two text areas.
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.id) === "seeker", "Tab reaches the seeker post first");
  await page.keyboard.type(seeker);
  await page.keyboard.press("Tab");
  check(await page.evaluate(() => document.activeElement.id) === "response", "Tab then reaches the response");
  await page.keyboard.type(response, { delay: 10 });
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("Up to date"), null, { timeout: 30000 });

  const shown = await page.$$eval("#mechs article", (els) => els.map((e) => ({ m: e.dataset.mechanism, level: Number(e.dataset.level) })));
  for (const m of ["ER", "IP", "EX"]) {
    const s = shown.find((x) => x.m === m);
    check(s && s.level === api[m].level, `${m} level shown (${s && s.level}) is the API's (${api[m].level})`);
  }
  // Characters highlighted per mechanism, in Unicode scalar values, as the API counts them.
  const marks = await page.evaluate(() => {
    const out = []; let at = 0;
    for (const node of document.getElementById("preview").childNodes) {
      const len = Array.from(node.textContent).length;
      if (node.nodeName === "MARK") out.push({ start: at, end: at + len, mechs: node.dataset.mechanisms.split(" ") });
      at += len;
    }
    return out;
  });
  for (const m of ["ER", "IP", "EX"]) {
    const want = new Set(); const got = new Set();
    for (const r of api[m].rationales) for (let i = r.start; i < r.end; i++) want.add(i);
    for (const k of marks) if (k.mechs.includes(m)) for (let i = k.start; i < k.end; i++) got.add(i);
    const same = want.size === got.size && [...want].every((i) => got.has(i));
    check(same, `${m} highlights ${got.size} characters, the API's rationales cover ${want.size}`);
  }
  const rationaleCount = ["ER", "IP", "EX"].reduce((n, m) => n + api[m].rationales.length, 0);
  console.log(`(the model marked ${rationaleCount} rationale span(s) in the typed response)`);
  const hints = await page.$$eval("#mechs .hint", (els) => els.map((e) => e.textContent.length));
  check(hints.length === 3 && hints.every((n) => n > 0), "every mechanism shows a hint or a note");
  check(external.length === 0, `the page loads nothing from elsewhere (${external.join(", ")})`);

  // Rendering with rationales whatever the model says: a known answer with overlapping
  // mechanisms, emoji (two UTF-16 units, one offset) and accents.
  const known = "Désolé 😢 I'm so sorry. That must be lonely. What happened?";
  const chars = Array.from(known);
  const at = (s) => Array.from(known.slice(0, known.indexOf(s))).length;
  const span = (s) => ({ start: at(s), end: at(s) + Array.from(s).length, text: s });
  const answer = {
    id: "1", truncated: false,
    ER: { level: 2, probs: [0.1, 0.2, 0.7], rationales: [span("😢 I'm so sorry")] },
    IP: { level: 1, probs: [0.2, 0.6, 0.2], rationales: [span("sorry. That must be lonely")] },
    EX: { level: 0, probs: [0.8, 0.1, 0.1], rationales: [] },
  };
  const stubbed = await browser.newPage();
  await stubbed.route("**/v1/score", (route) => route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(answer) }));
  await stubbed.goto(url);
  await stubbed.fill("#seeker", "I feel alone");
  await stubbed.fill("#response", known);
  await stubbed.waitForFunction(() => document.getElementById("status").textContent.includes("Up to date"), null, { timeout: 30000 });
  const rendered = await stubbed.evaluate(() => Array.from(document.getElementById("preview").childNodes).map((n) => ({
    text: n.textContent, mechs: n.nodeName === "MARK" ? n.dataset.mechanisms : "" })));
  check(rendered.map((r) => r.text).join("") === known, "the preview shows the response unchanged");
  const marked = (m) => rendered.filter((r) => r.mechs.split(" ").includes(m)).map((r) => r.text).join("");
  check(marked("ER") === "😢 I'm so sorry", `ER highlight is the ER rationale (${marked("ER")})`);
  check(marked("IP") === "sorry. That must be lonely", `IP highlight is the IP rationale (${marked("IP")})`);
  check(rendered.some((r) => r.mechs === "ER IP" && r.text === "sorry"), "the overlap is marked with both mechanisms");
  const levels = await stubbed.$$eval("#mechs article", (els) => els.map((e) => e.querySelector(".level").textContent));
  check(levels.join(",") === "strong,weak,none", `levels in words (${levels})`);
  check(chars.length === Array.from(rendered.map((r) => r.text).join("")).length, "offsets count Unicode scalar values");

  // Suggestions: Suggest, apply the first, the page rescores to what it said, Undo restores.
  const weak = "You should just look for another job.";
  const weakScore = await score(weak);
  await page.fill("#response", weak);
  // The page shows the new response's levels once its debounced request is answered.
  await page.waitForFunction((want) => {
    const shown = Array.from(document.querySelectorAll("#mechs article")).map((e) => `${e.dataset.mechanism}${e.dataset.level}`).join(",");
    return document.getElementById("status").textContent.includes("Up to date") && shown === want;
  }, ["ER", "IP", "EX"].map((m) => `${m}${weakScore[m].level}`).join(","), { timeout: 30000 });
  const levelsOf = () => page.$$eval("#mechs article", (els) => Object.fromEntries(els.map((e) => [e.dataset.mechanism, Number(e.dataset.level)])));
  const start = await levelsOf();
  await page.click("#suggest");
  await page.waitForFunction(() => /Suggestions ready|Could not/.test(document.getElementById("status").textContent), null, { timeout: 30000 });
  const items = await page.$$eval("#suggestions li[data-testid=suggestion]", (els) => els.map((e) => ({ m: e.dataset.mechanism, after: Number(e.dataset.after), text: e.textContent })));
  check(items.length > 0, `Suggest lists suggestions (${items.length})`);
  if (suggestShot) await page.screenshot({ path: suggestShot, fullPage: true });
  if (items.length > 0) {
    const api = await (await fetch(url + "v1/suggest", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ seeker_post: seeker, response_post: weak }) })).json();
    check(api.suggestions.length === items.length, "the page lists what POST /v1/suggest answers");
    await page.click("#suggestions li[data-testid=suggestion] button");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("Up to date"), null, { timeout: 30000 });
    const applied = await page.inputValue("#response");
    const s = api.suggestions[0];
    const chars = Array.from(weak);
    const [a, b] = s.op === "insert" ? [s.at, s.at] : [s.start, s.end];
    check(applied === chars.slice(0, a).join("") + s.text + chars.slice(b).join(""), "Apply makes exactly the suggested edit");
    const after = await levelsOf();
    check(after[s.mechanism] === s.after.level && (s.raises === "probability" || after[s.mechanism] > start[s.mechanism]),
      `${s.mechanism} is now ${after[s.mechanism]}, as suggested (${s.after.level}; was ${start[s.mechanism]})`);
    check(await page.$$eval("#suggestions li", (els) => els.length) === 0, "applied suggestions are cleared");
    check(!(await page.isDisabled("#undo")), "Undo is offered");
    await page.click("#undo");
    await page.waitForFunction(() => document.getElementById("status").textContent.includes("Up to date"), null, { timeout: 30000 });
    check(await page.inputValue("#response") === weak, "Undo restores the response");
    const undone = await levelsOf();
    check(JSON.stringify(undone) === JSON.stringify(start), `levels are back (${JSON.stringify(undone)})`);
    check(await page.isDisabled("#undo"), "nothing left to undo");
  }

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(url);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  check(!overflow, "no horizontal scrolling on a phone-sized screen");
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
} finally {
  await browser.close();
}
if (failed) { console.log("browser test FAILED"); process.exit(1); }
console.log("browser test passed");
