// Served-code test: node web/e2e/sri.mjs <relay url>
//
// The pages bind every script and the wasm module they load with Subresource Integrity
// (docs/SECURITY.md, "Served code"). This plays a relay (or anything on the path) that swaps
// one file behind a genuine page, using Playwright's request interception, and checks that
// headless Chromium refuses to run it:
//  1. the genuine patient page starts (the wasm loads, "Loading…" goes away);
//  2. a modified imported module (js/format.js) is refused: the page never starts;
//  3. a modified entry script (js/patient.js) is refused: the page never starts;
//  4. a modified wasm module is refused: the page says the program could not start;
//  5. the same for the dashboard's entry script.
// Exits 0 on success, 1 with a message on the first failure.

import { chromium } from 'playwright-core';

const [url] = process.argv.slice(2);
if (!url) {
  console.error('usage: node sri.mjs <relay url>');
  process.exit(2);
}
const base = url.endsWith('/') ? url : `${url}/`;
const started = Date.now();

function log(msg) {
  console.log(`sri [${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage', '--ignore-certificate-errors'],
});

/**
 * Opens `path` with `file` (a path under the web root, or null) replaced by `tamper(body)`.
 * Returns the page, the console messages and whether the tampered file was requested.
 */
async function open(path, file, tamper) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  page.on('pageerror', (e) => consoleLines.push(String(e)));
  let swapped = false;
  if (file) {
    await page.route(`**/${file}`, async (route) => {
      const response = await route.fetch();
      const body = await response.body();
      swapped = true;
      await route.fulfill({ response, body: tamper(body) });
    });
  }
  await page.goto(base + path, { waitUntil: 'load' });
  return { page, context, consoleLines, swapped: () => swapped };
}

const appendJs = (b) => Buffer.concat([b, Buffer.from('\nglobalThis.tampered = true;\n')]);
const flipWasm = (b) => {
  const copy = Buffer.from(b);
  copy[copy.length - 1] ^= 0x01;
  return copy;
};

try {
  // 1. The genuine page starts.
  {
    const { page, context, consoleLines } = await open('', null);
    await page.waitForSelector('#loading', { state: 'hidden', timeout: 20_000 });
    const bad = consoleLines.filter((l) => /integrity/i.test(l));
    check(bad.length === 0, `genuine page reported integrity problems: ${bad.join(' | ')}`);
    const integrity = await page.$$eval('script[type=module], link[rel=modulepreload], #wasm-module',
      (els) => els.map((e) => e.integrity || e.dataset.integrity || ''));
    check(integrity.length >= 6 && integrity.every((v) => v.startsWith('sha256-')),
      `every script, module and the wasm carry integrity: ${JSON.stringify(integrity)}`);
    log('genuine page started, every script and the wasm carry integrity');
    await context.close();
  }

  // 2-3, 5. A swapped module or entry script never runs.
  for (const [path, file] of [['', 'js/format.js'], ['', 'js/patient.js'], ['hospital', 'js/hospital.js']]) {
    const { page, context, consoleLines, swapped } = await open(path, file, appendJs);
    await page.waitForTimeout(1500);
    check(swapped(), `${file} was requested`);
    const ran = await page.evaluate(() => globalThis.tampered === true);
    check(!ran, `the modified ${file} ran`);
    check(consoleLines.some((l) => /integrity/i.test(l)),
      `Chromium reported an integrity failure for ${file}: ${consoleLines.join(' | ')}`);
    if (path === '') {
      check(await page.isVisible('#loading'), `the page started without ${file}`);
    }
    log(`modified ${file} refused`);
    await context.close();
  }

  // 4. A swapped wasm module is refused and the page says so.
  {
    const { page, context, consoleLines, swapped } = await open('', 'pkg/cohort_web_bg.wasm', flipWasm);
    await page.waitForSelector('#loading.error, .notice.error', { timeout: 20_000 });
    check(swapped(), 'the wasm module was requested');
    const text = await page.textContent('#loading');
    check(/could not start/.test(text || ''), `the page explains the failure: ${text}`);
    check(consoleLines.some((l) => /integrity/i.test(l)) || /integrity/i.test(text || ''),
      `an integrity failure was reported: ${consoleLines.join(' | ')} / ${text}`);
    log('modified wasm refused');
    await context.close();
  }
  await browser.close();
  log('ok');
} catch (e) {
  console.error(`sri: ${e.message}`);
  await browser.close();
  process.exit(1);
}
