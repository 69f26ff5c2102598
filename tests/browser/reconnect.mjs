// Many users in one headless Chromium (a browser context each, so a cookie jar each), for
// tests/tests/broker_restart.rs: each logs in at the OpenID provider, connects to a pool and
// waits for noVNC to connect; then, told on stdin that the broker was killed, waits for every
// page to connect again by itself, and checks no page was sent back to the login form.
//
// USERS lists one user per page (a user may appear more than once: a session each). Prints
// "connected <page> <user> <desktop>" per page, then "ready"; after a line "killed" on stdin,
// "reconnected <page> <user> <desktop> <ms>" per page (ms since "killed"), then "done".
// Usage: BROKER_URL=... USERS=a,b,a,... POOL=... NAMESPACE=... node reconnect.mjs
// (each user's password is "<user>-pw").
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [base, users, pool, namespace] = ["BROKER_URL", "USERS", "POOL", "NAMESPACE"].map((n) => {
  if (!process.env[n]) throw new Error(`${n} is not set`);
  return process.env[n];
});
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const sessions = [];
  // One at a time: logins and first frames are cheap; twenty at once on two cores are not.
  for (const [index, user] of users.split(",").entries()) {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 800, height: 600 } });
    const page = await context.newPage();
    const logins = [];
    page.on("framenavigated", (f) => { if (f === page.mainFrame() && !f.url().startsWith(base)) logins.push(f.url()); });
    await page.goto(base);
    await page.getByLabel("Username:").fill(user);
    await page.getByLabel("Password:").fill(`${user}-pw`);
    await page.getByRole("button", { name: "Login" }).click();
    await page.getByRole("button", { name: `Connect to ${pool}` }).click();
    await page.waitForURL(new RegExp(`/desktops/${namespace}/`), { timeout: 60000 });
    await page.waitForFunction(() => window.verdantState === "connected", null, { timeout: 120000 })
      .catch(async (e) => {
        const said = await page.evaluate(() => `${window.verdantState}: ${document.body.innerText.slice(0, 300)}`);
        throw new Error(`session ${index} (${user}) at ${page.url()} never connected: ${said}: ${e}`);
      });
    const desktop = new URL(page.url()).pathname.split("/")[3];
    sessions.push({ index, user, page, desktop, logins });
    console.log(`connected ${index} ${user} ${desktop}`);
  }
  for (const s of sessions) {
    s.before = s.logins.length;
    s.count = await s.page.evaluate(() => window.verdantConnects);
  }
  console.log("ready");
  const { value } = await lines.next();
  if (value?.trim() !== "killed") throw new Error(`expected "killed", got ${JSON.stringify(value)}`);
  const killed = Date.now();
  await Promise.all(sessions.map(async (s) => {
    // A new connection since "ready" (each connect event counts).
    await s.page.waitForFunction((n) => window.verdantConnects > n && window.verdantState === "connected",
      s.count, { timeout: 120000 })
      .catch(async (e) => { throw new Error(`${s.user}: ${await s.page.evaluate(() => window.verdantState)}: ${e}`); });
    const desktop = new URL(s.page.url()).pathname.split("/")[3];
    if (s.logins.length !== s.before) throw new Error(`${s.user} was sent to log in again: ${s.logins.slice(s.before)}`);
    console.log(`reconnected ${s.index} ${s.user} ${desktop} ${Date.now() - killed}`);
  }));
  console.log("done");
} finally {
  await browser.close();
  input.close();
}
process.exit(0);
