// Runs the wasm patient timing in headless Chromium and prints one JSON line per size on stdout.
//
//   node web/bench/run.mjs --fixtures DIR [--sizes 100,1000] [--reps 20] [--warmup 3]
//                          [--proofs both|on|off] [--prove-reps 50]
//
// With --proofs both (the default) each size is replayed with validity proofs off, then on
// (round-N-noproofs.json, round-N.json), one line each. First, unless --prove-reps is 0, times
// core's proof generation alone (BenchProof) for a one-question study and a 10-question study
// (10 required numbers, all 45 pairs), one line each.
//
// Serves web/ (the page and its own bundle, built with the `bench` feature into bench/pkg) and
// the fixtures over plain HTTP on 127.0.0.1 with cross-origin isolation headers (COOP/COEP:
// performance.now() resolution 5 µs instead of 100 µs), opens web/bench/bench.html in /usr/bin/chromium (playwright-core from web/e2e),
// and calls window.runBench(n, reps, warmup) for each size. Progress goes to stderr.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const { chromium } = await import(
  new URL('../e2e/node_modules/playwright-core/index.mjs', import.meta.url));

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
}
const fixtures = arg('fixtures');
if (!fixtures) {
  console.error('usage: node run.mjs --fixtures DIR [--sizes 100,1000] [--reps 20] [--warmup 3]');
  process.exit(2);
}
const sizes = arg('sizes', '100,1000').split(',').map(Number);
const reps = Number(arg('reps', '20'));
const warmup = Number(arg('warmup', '3'));
const browserPath = arg('chromium', '/usr/bin/chromium');
const proofSettings = { both: [false, true], on: [true], off: [false] }[arg('proofs', 'both')];
if (!proofSettings) {
  console.error('--proofs must be both, on or off');
  process.exit(2);
}
const proveReps = Number(arg('prove-reps', '50'));
const number = (i) => ({ id: `q${i}`, kind: 'number', text: `Q${i}`, min: 0, max: 300, decimals: 1, buckets: 10 });
const proveStudies = [
  ['1 question', { id: 'prove1', size: 100, min: 0, max: 300, decimals: 1, buckets: 10 }],
  ['10 questions', { id: 'prove10', size: 100, questions: Array.from({ length: 10 }, (_, i) => number(i)) }],
];

const webRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));
const fixtureRoot = resolve(fixtures);
const types = {
  '.html': 'text/html; charset=utf-8', '.mjs': 'text/javascript', '.js': 'text/javascript',
  '.wasm': 'application/wasm', '.json': 'application/json',
};

const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const [root, rel] = path.startsWith('/fixtures/')
    ? [fixtureRoot, path.slice('/fixtures/'.length)]
    : [webRoot, path.slice(1)];
  const file = normalize(join(root, rel));
  if (!file.startsWith(root + sep)) {
    res.writeHead(403).end();
    return;
  }
  try {
    const body = await readFile(file);
    res.writeHead(200, {
      'Content-Type': types[extname(file)] ?? 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-store',
    });
    res.end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: browserPath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});
let rc = 0;
try {
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`page: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`page error: ${e}`));
  await page.goto(`${base}/bench/bench.html`);
  await page.waitForFunction(
    () => document.getElementById('status')?.textContent !== 'loading', null, { timeout: 30_000 });
  const status = await page.textContent('#status');
  if (status !== 'ready') throw new Error(`page: ${status}`);
  const version = browser.version();
  if (proveReps > 0) {
    for (const [label, study] of proveStudies) {
      const out = await page.evaluate(([l, s, r, w]) => window.runProve(l, s, r, w),
        [label, JSON.stringify(study), proveReps, warmup]);
      console.error(`wasm bench: proof, ${label}: p50 ${out.ms.p50} ms`);
      console.log(JSON.stringify({ browser: `Chromium ${version}`, ...out }));
    }
  }
  for (const n of sizes) {
    for (const proofs of proofSettings) {
      console.error(`wasm bench: n = ${n}, proofs ${proofs}, ${warmup} warm-up + ${reps} repetitions`);
      const t0 = Date.now();
      const out = await page.evaluate(([n, r, w, p]) => window.runBench(n, r, w, p),
        [n, reps, warmup, proofs]);
      console.error(`wasm bench: n = ${n}, proofs ${proofs} done in ${((Date.now() - t0) / 1000).toFixed(1)} s: `
        + `round p50 ${out.round.p50} ms, key agreement p50 ${out.key_agreement.p50} ms, `
        + `after the delivery p50 ${out.after_delivery.p50} ms`);
      console.log(JSON.stringify({ browser: `Chromium ${version}`, ...out }));
    }
  }
} catch (e) {
  console.error(`wasm bench failed: ${e.stack ?? e}`);
  rc = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(rc);
