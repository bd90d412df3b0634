// Open a study in MONAI Label's OHIF (served at <server>/ohif/) in headless Debian Chromium, run the
// server's model from the MONAI Label panel ("Run" in its Auto-Segmentation section), and save a
// screenshot. Prints one JSON line: {"infer_status": ..., "buttons": [...], "screenshot": ...}.
//   node ohif_shot.js <server url> <StudyInstanceUID> <screenshot.png> [timeout seconds]
// playwright-core comes from .work/node (.ci/install_viewer_deps.sh); no browser is downloaded.
const path = require('path');
const fs = require('fs');
const { chromium } = require(path.resolve(__dirname, '../../.work/node/node_modules/playwright-core'));

const [server, study, shot, timeoutArg] = process.argv.slice(2);
const timeoutMs = 1000 * Number(timeoutArg || 240);

(async () => {
  const userDataDir = fs.mkdtempSync('/tmp/seapeft-chromium-');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
  });
  const result = { infer_status: null, buttons: [], console_errors: [] };
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(timeoutMs);
    page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(m.text().slice(0, 300)); });
    page.on('pageerror', (e) => result.console_errors.push('pageerror: ' + String(e.stack || e).slice(0, 600)));
    const inferDone = page.waitForResponse((r) => r.url().includes('/infer/'), { timeout: timeoutMs })
      .then((r) => { result.infer_status = r.status(); })
      .catch(() => {});
    await page.goto(`${server}/ohif/monai-label?StudyInstanceUIDs=${study}`, { waitUntil: 'domcontentloaded' });
    await page.waitForSelector('canvas', { state: 'attached' });
    await page.waitForTimeout(8000); // let the series load into the viewport
    const hide = page.getByText('Confirm and Hide');
    if (await hide.count()) await hide.click();
    // point the MONAI Label panel at this server (its field defaults to port 8000) and connect
    const field = page.locator('input[value^="http"]').first();
    await field.fill(`${server}/`);
    const infoDone = page.waitForResponse((r) => r.url().includes('/info/'), { timeout: timeoutMs });
    await field.press('Enter');
    await page.locator('xpath=//input[starts-with(@value,"http")]/following::button[1]').first().click();
    await infoDone;
    await page.waitForTimeout(3000);
    result.buttons = await page.$$eval('button', (bs) => bs.map((b) => (b.title || b.textContent || '').trim()).filter(Boolean));
    const run = page.locator('button.actionButton[title*="Auto"], button.actionButton[title*="Segmentation"]').first();
    if (await run.count()) {
      await run.click();
      await inferDone;
      await page.waitForTimeout(6000); // the labelmap is drawn after the response is parsed
    }
    await page.screenshot({ path: shot });
    result.screenshot = shot;
  } finally {
    await context.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
})().catch((err) => { console.error(String(err)); process.exit(1); });
