// Opens the noVNC page in headless Chromium, waits for the desktop, prints the RRGGBB of each
// "x,y" point and saves a screenshot. Usage: node check.mjs URL SCREENSHOT x,y...
// With PASTE set, then pastes that text into noVNC as a user would; with EXPECT_CLIPBOARD set,
// then waits for the server to hand noVNC that clipboard text and prints it. With THEN_WAIT
// set to "x,y RRGGBB", then prints "ready", waits for that pixel to turn that colour (the
// caller changes the desktop when it reads "ready") and prints the points again.
import { chromium } from "playwright-core";

const [url, screenshot, ...points] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  await page.goto(url);
  await page.waitForFunction(() => window.verdantState === "connected", null, { timeout: 30000 })
    .catch(async (e) => { throw new Error(`not connected: ${await page.evaluate(() => window.verdantState)}: ${e}`); });
  // The first frame is drawn once the top panel is no longer black.
  await page.waitForFunction(() => window.verdantPixel(10, 10) !== "000000", null, { timeout: 30000 });
  for (const point of points) {
    const [x, y] = point.split(",").map(Number);
    console.log(`${x},${y} ${await page.evaluate(([x, y]) => window.verdantPixel(x, y), [x, y])}`);
  }
  await page.screenshot({ path: screenshot });
  if (process.env.PASTE) {
    await page.evaluate((text) => window.verdantPaste(text), process.env.PASTE);
    console.log("pasted");
  }
  if (process.env.EXPECT_CLIPBOARD) {
    const want = process.env.EXPECT_CLIPBOARD;
    await page.waitForFunction((want) => window.verdantClipboard === want, want, { timeout: 30000 })
      .catch(async (e) => { throw new Error(`clipboard is ${JSON.stringify(await page.evaluate(() => window.verdantClipboard))}: ${e}`); });
    console.log(`clipboard ${await page.evaluate(() => window.verdantClipboard)}`);
  }
  if (process.env.THEN_WAIT) {
    const [at, want] = process.env.THEN_WAIT.split(" ");
    const [x, y] = at.split(",").map(Number);
    console.log("ready");
    await page.waitForFunction(([x, y, want]) => window.verdantPixel(x, y) === want, [x, y, want], { timeout: 30000 })
      .catch(async (e) => { throw new Error(`${at} is ${await page.evaluate(([x, y]) => window.verdantPixel(x, y), [x, y])}, not ${want}: ${e}`); });
    for (const point of points) {
      const [x, y] = point.split(",").map(Number);
      console.log(`${x},${y} ${await page.evaluate(([x, y]) => window.verdantPixel(x, y), [x, y])}`);
    }
  }
} finally {
  await browser.close();
}
