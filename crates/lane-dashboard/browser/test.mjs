// Browser test of the a3s-lane dashboard in real headless Chromium (playwright-core
// driving the system's chromium). Started by run.sh, which installs what it needs.
//
//   node test.mjs DEMO_BINARY [--screenshots DIR]
//
// Starts the demo server (an in-process queue with steady traffic and flaky commands),
// opens the dashboard and checks: the page loads and goes live; counts change while
// commands run, with no reload; an action without the token is refused; a lane is paused
// and resumed; a dead letter is re-driven and runs. Prints "N passed, M failed".
import { spawn } from "node:child_process";
import { existsSync, mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [demo, ...rest] = process.argv.slice(2);
const shotsAt = rest.indexOf("--screenshots");
const shots = shotsAt >= 0 ? rest[shotsAt + 1] : null;
const TOKEN = "browser-test-token-" + Math.random().toString(36).slice(2);
const browserPath = process.env.CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(existsSync);

let passed = 0, failed = 0;
async function check(name, fn) {
  const started = Date.now();
  try {
    await fn();
    passed++;
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}
function assert(cond, msg) { if (!cond) throw new Error(msg); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e; }
    await sleep(150);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

// --- the demo server --------------------------------------------------------------------
const server = spawn(demo, ["--addr", "127.0.0.1:0", "--token", TOKEN, "--rate", "25"], { stdio: ["ignore", "ignore", "pipe"] });
let log = "";
server.stderr.on("data", (d) => { log += d; });
const base = await until("the demo server's address", () => (log.match(/http:\/\/(127\.0\.0\.1:\d+)\//) || [])[1] && `http://${log.match(/http:\/\/(127\.0\.0\.1:\d+)\//)[1]}/`, 30000);
const apiGet = async (path, auth) => {
  const res = await fetch(base + path, { headers: auth ? { Authorization: "Bearer " + TOKEN } : {} });
  return res.json();
};

const browser = await chromium.launch({ executablePath: browserPath, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("dialog", (d) => d.accept());

try {
  await check("the lanes page loads and goes live", async () => {
    await page.goto(base + "lanes");
    await page.waitForSelector('tr[data-lane="emails"]', { timeout: 10000 });
    const rows = await page.locator("#lanes tbody tr").count();
    assert(rows === 4, `4 lanes shown, got ${rows}`);
    await page.waitForSelector("#live.on", { timeout: 10000 });
    assert((await page.textContent("#auth-state")).includes("view only"), "without a token the page says view only");
  });

  await check("live counts change while commands run (no reload)", async () => {
    await page.evaluate(() => { window.__sameDocument = true; });
    const seen = new Set();
    await until("several different counts", async () => {
      const snapshot = await page.evaluate(() =>
        [...document.querySelectorAll("#lanes tbody tr")].map((r) => r.querySelector(".active").textContent + "/" + r.querySelector(".pending").textContent).join(",")
        + "|" + document.getElementById("total-rate").textContent);
      seen.add(snapshot);
      return seen.size >= 4;
    }, 15000);
    assert(await page.evaluate(() => window.__sameDocument === true), "the page was not reloaded");
    const rate = parseFloat(await page.textContent("#total-rate"));
    assert(rate > 0, `a completion rate above 0, got ${rate}`);
    const feed = await page.locator("#feed div").count();
    assert(feed > 0, "the recent events feed fills");
  });

  if (shots) mkdirSync(shots, { recursive: true });

  await check("an action without the token is refused", async () => {
    await page.click('tr[data-lane="emails"] button[data-action="pause"]');
    await page.waitForSelector("#flash.error", { timeout: 5000 });
    const text = await page.textContent("#flash");
    assert(text.includes("401"), `a 401 shown, got: ${text}`);
    const lanes = await apiGet("api/lanes?q=emails");
    assert(!lanes.lanes[0].paused, "the lane is not paused");
    // A cross-site request with the right token is refused too.
    const res = await fetch(base + "api/lanes/emails/pause", { method: "POST", headers: { Authorization: "Bearer " + TOKEN, Origin: "https://evil.example" } });
    assert(res.status === 403, `cross-site: 403, got ${res.status}`);
  });

  await check("with the token, a lane is paused and resumed", async () => {
    await page.fill("#token", TOKEN);
    await page.click('#token-form button[type="submit"]');
    await until("token accepted", async () => (await page.textContent("#auth-state")).includes("token accepted"));
    await page.waitForSelector('tr[data-lane="emails"]');
    await page.click('tr[data-lane="emails"] button[data-action="pause"]');
    await page.waitForSelector('tr[data-lane="emails"] .state .badge.paused', { timeout: 5000 });
    assert((await apiGet("api/lanes?q=emails")).lanes[0].paused, "the queue says paused");
    // Paused: nothing of the lane starts, so its running count drains to 0 and stays.
    await until("emails running drains to 0", async () => (await page.textContent('tr[data-lane="emails"] .active')).trim() === "0", 10000);
    if (shots) await page.screenshot({ path: `${shots}/dashboard-lanes-paused.png` });
    await page.click('tr[data-lane="emails"] button[data-action="resume"]');
    await until("the paused badge goes", async () => (await page.locator('tr[data-lane="emails"] .state .badge.paused').count()) === 0, 5000);
    assert(!(await apiGet("api/lanes?q=emails")).lanes[0].paused, "the queue says resumed");
  });

  await check("a dead letter is re-driven and runs", async () => {
    await page.click('nav a[data-view="dead-letters"]');
    await page.waitForSelector("#dead-letters tbody tr", { timeout: 15000 });
    const id = await page.getAttribute("#dead-letters tbody tr", "data-id");
    // Its payload shows (the token is set).
    await page.click(`#dead-letters tbody tr[data-id="${id}"] button:has-text("Payload")`);
    await page.waitForSelector("#detail pre");
    assert((await page.textContent("#detail pre")).includes('"key"'), "the payload is shown");
    if (shots) await page.screenshot({ path: `${shots}/dashboard-dead-letters.png` });
    await page.click(`#dead-letters tbody tr[data-id="${id}"] button[data-action="redrive"]`);
    const flashText = await until("the re-drive message", async () => {
      const t = await page.textContent("#flash");
      return t.includes("re-driven as command") && t;
    });
    const newId = flashText.match(/as command (\d+)/)[1];
    await until(`the re-driven command ${newId} completes`, async () => (await apiGet(`api/commands/${newId}`, true)).state === "completed", 15000);
    // And the page shows it completed: find it by id on the commands page.
    await page.click('nav a[data-view="commands"]');
    await page.fill("#cmd-id", newId);
    await page.click('form button[type="submit"]:has-text("Find")');
    await page.waitForSelector("#detail pre");
    const detail = await page.textContent("#detail pre");
    assert(detail.includes('"completed"') && detail.includes('"ok": true'), `the command ran: ${detail}`);
    const letters = await apiGet("api/dead-letters?limit=1000");
    assert(!letters.dead_letters.some((d) => String(d.command_id) === id), "the letter left the dead letters");
  });

  if (shots) {
    await page.goto(base + "commands?lane=emails&state=completed");
    await page.waitForSelector("#commands tbody tr");
    await page.click("#commands tbody tr a");
    await page.waitForSelector("#detail pre");
    await page.screenshot({ path: `${shots}/dashboard-commands.png` });
    // The lanes page after a while, its chart and rates filled.
    await page.goto(base + "lanes");
    await page.waitForSelector('tr[data-lane="emails"]');
    await sleep(12000);
    await page.screenshot({ path: `${shots}/dashboard-lanes.png` });
  }

  await check("the schedules page lists the demo's schedule", async () => {
    await page.click('nav a[data-view="schedules"]');
    await page.waitForSelector('#schedules tr[data-schedule="heartbeat"]', { timeout: 5000 });
  });

  await check("no script error on the pages", async () => {
    assert(pageErrors.length === 0, pageErrors.join("\n"));
  });
} finally {
  await browser.close();
  server.kill("SIGINT");
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
