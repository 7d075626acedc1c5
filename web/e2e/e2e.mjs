// Browser end-to-end test: node web/e2e/e2e.mjs <relay url> <admin token> [screenshot dir]
//
// Drives /usr/bin/chromium (headless) against a running cohort-relay:
//  1. the dashboard signs in and creates a study through its form;
//  2. the patient page refuses bad values beside the field before anything is sent;
//  3. three patient tabs join with three values; each shows the same correct count, sum, mean
//     and standard deviation and the same safety code, and so does the dashboard;
//  4. no value appears in any URL, storage, request or WebSocket frame;
//  5. a dropped connection is explained and the tab rejoins;
//  6. a wrong invite code is explained; the dashboard starts a round early; CSV and JSON
//     downloads match;
//  7. a questionnaire study built in the dashboard's form (two numbers, a choice and an optional
//     number; questions added, moved and removed; small cells shown), whose JSON preview is
//     exactly what is POSTed: the form checks every answer before joining; three tabs answer
//     (one prefers not to say) and every tab and the dashboard show the exact per-question
//     statistics, option counts, correlations and fitted lines (vs a plain JS computation);
//     a second questionnaire (run.sh's --study-file) with small-cell suppression on shows "< 3";
//  7c. a patient with modified code (cohort-forger, $COHORT_FORGER) beside three tabs in a study
//     with validity proofs: the tabs and the dashboard name it as left out, results exact;
//  8. screenshots of finished patient tabs and of the dashboard, at desktop and phone widths.
// Exits 0 on success, 1 with a message on the first failure.

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [url, token, outDir = 'target/e2e'] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node e2e.mjs <relay url> <admin token> [screenshot dir]');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const base = url.endsWith('/') ? url : `${url}/`;
const T = 30_000;
const started = Date.now();

function log(msg) {
  console.log(`e2e [${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);
}

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

function close(a, b, what) {
  check(Math.abs(a - b) < 1e-9 * Math.max(1, Math.abs(b)), `${what}: got ${a}, want ${b}`);
}

/** Count, mean, population sd of the numbers given; r, slope, intercept of a pair. */
function describe(xs) {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  return { count: n, sum: xs.reduce((a, b) => a + b, 0), mean, stddev: Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / n) };
}

function fit(xs, ys) {
  const n = xs.length;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  const slope = sxy / sxx;
  return { n, r: sxy / Math.sqrt(sxx * syy), slope, intercept: my - slope * mx };
}

/** What a questionnaire result view shows (js/results.js test hooks), read inside `root`. */
async function questionnaireShown(root) {
  return root.evaluate((r) => {
    const data = (sel) => [...r.querySelectorAll(sel)].map((e) => ({ id: e.dataset.testid, ...e.dataset, text: e.textContent }));
    return {
      tiles: data('.q-tile'),
      options: data('tr[data-testid^="q-"]'),
      pairs: data('tr[data-testid^="pair-"]'),
      lines: data('line[data-testid^="line-"]'),
      byOption: data('tr[data-testid^="by-"]'),
      caption: r.querySelector('[data-testid="small-cells"]')?.textContent ?? '',
    };
  });
}

const near = (a, b, what, tol = 1e-9) => check(Math.abs(Number(a) - b) <= tol * Math.max(1, Math.abs(b)), `${what}: got ${a}, want ${b}`);

function stats(values) {
  const xs = values.map(Number);
  const n = xs.length;
  const sum = xs.reduce((a, b) => a + b, 0);
  const mean = sum / n;
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / n);
  return { count: n, sum, mean, stddev: sd };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--disable-dev-shm-usage', '--ignore-certificate-errors'],
});

/** Everything a page sent or showed that could leak a value, and every console problem. */
const traffic = [];
const problems = [];

function watch(page, name) {
  page.on('request', (r) => traffic.push({ page: name, kind: 'request', text: `${r.method()} ${r.url()} ${r.postData() ?? ''}` }));
  page.on('websocket', (ws) => {
    traffic.push({ page: name, kind: 'ws-url', text: ws.url() });
    ws.on('framesent', (f) => traffic.push({ page: name, kind: 'sent', text: String(f.payload) }));
    ws.on('framereceived', (f) => traffic.push({ page: name, kind: 'received', text: String(f.payload) }));
  });
  page.on('pageerror', (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    // Expected: the failed socket while offline, and the 401 of the wrong token on purpose.
    const expected = /WebSocket connection to .* failed|status of 401/;
    if (m.type() === 'error' && !expected.test(m.text())) {
      problems.push(`${name}: console error: ${m.text()}`);
    }
  });
  return page;
}

async function resultOf(page) {
  const r = page.getByTestId('result');
  await r.waitFor({ state: 'visible', timeout: T });
  const d = await r.evaluate((e) => ({ ...e.dataset }));
  const code = (await page.getByTestId('safety-code').textContent()).trim();
  const mark = (await page.getByTestId('result-checked').textContent()).trim();
  check(d.checkedOnDevice === 'true' && mark === '✓ checked on this device', `checked on this device: ${mark}`);
  return { count: Number(d.count), sum: Number(d.sum), mean: Number(d.mean), stddev: Number(d.stddev), round: Number(d.round), code };
}

async function dashResult(dash, study, round) {
  const r = dash.locator(`article[data-study="${study}"] [data-testid="dash-result"][data-round="${round}"]`);
  await r.waitFor({ state: 'visible', timeout: T });
  const d = await r.evaluate((e) => ({ ...e.dataset }));
  const code = (await dash.locator(`article[data-study="${study}"] [data-testid="dash-safety-code"]`).textContent()).trim();
  return { count: Number(d.count), sum: Number(d.sum), mean: Number(d.mean), stddev: Number(d.stddev), code, dataCode: d.safetyCode };
}

let failed = false;
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1100, height: 900 }, acceptDownloads: true });

  // 1. Dashboard: sign in, create the study through the form.
  const dash = watch(await ctx.newPage(), 'dashboard');
  await dash.goto(`${base}hospital`);
  await dash.getByTestId('token').fill('wrong-token-wrong-token');
  await dash.getByTestId('login').click();
  await dash.getByText('The relay did not accept this token.').waitFor({ timeout: T });
  await dash.getByTestId('token').fill(token);
  await dash.getByTestId('login').click();
  await dash.locator('#create').waitFor({ state: 'visible', timeout: T });
  await dash.locator('.conn[data-state="live"]').waitFor({ timeout: T });
  if (!(await dash.locator('#create').evaluate((e) => e.open))) await dash.locator('#create > summary').click();
  const fields = { id: 'e2e', question: 'How tall are you?', unit: 'cm', min: '0', max: '300', decimals: '1', buckets: '10', size: '3' };
  for (const [k, v] of Object.entries(fields)) await dash.locator(`#f-${k}`).fill(v);
  const preview = (await dash.getByTestId('spec-preview').textContent()).trim();
  check(preview === '--study "id=e2e,question=How tall are you?,unit=cm,min=0,max=300,decimals=1,buckets=10,size=3"', `spec preview: ${preview}`);
  await dash.locator('#f-threshold').fill('4');
  await dash.getByText('Threshold must be between 2 and the cohort size.').waitFor({ timeout: T });
  check(await dash.getByTestId('create').isDisabled(), 'create is disabled for a bad spec');
  await dash.locator('#f-threshold').fill('');
  await dash.getByTestId('create').click();
  await dash.locator('article[data-study="e2e"]').waitFor({ timeout: T });
  check(await dash.evaluate(() => sessionStorage.length === 1 && localStorage.length === 0), 'token only in sessionStorage');
  log('dashboard signed in and created study e2e');

  // 2. Patient page: errors beside the field, before anything is sent.
  const values = ['150.5', '172.3', '181.1'];
  const want = stats(values);
  const tabs = [];
  for (let i = 0; i < 3; i++) tabs.push(watch(await ctx.newPage(), `patient ${i + 1}`));
  await Promise.all(tabs.map((p) => p.goto(`${base}?study=e2e`)));
  const first = tabs[0];
  await first.getByTestId('value').waitFor({ state: 'visible', timeout: T });
  check((await first.locator('#question').textContent()) === 'How tall are you?', 'question shown');
  for (const [bad, msg] of [['300.5', "Outside the study's allowed range."],
    ['12.34', 'Too many digits after the decimal point (at most 1).'],
    ['1,5', "Not a number: use digits with an optional '-' and '.'."]]) {
    await first.getByTestId('value').fill(bad);
    await first.getByTestId('value').blur();
    await first.locator('#value-error').getByText(msg, { exact: true }).waitFor({ timeout: T });
    check(await first.getByTestId('join').isDisabled(), `join disabled for ${bad}`);
  }
  check(!traffic.some((t) => t.page === 'patient 1' && (t.kind === 'ws-url' || t.kind === 'sent')), 'no socket before joining');
  log('value errors shown beside the field; nothing sent');

  // 3. Three tabs, three values, one round.
  for (let i = 0; i < 3; i++) {
    await tabs[i].getByTestId('value').fill(values[i]);
    await tabs[i].getByTestId('join').click();
  }
  const results = await Promise.all(tabs.map(resultOf));
  for (const [i, r] of results.entries()) {
    check(r.count === 3, `tab ${i + 1} count ${r.count}`);
    close(r.sum, want.sum, `tab ${i + 1} sum`);
    close(r.mean, want.mean, `tab ${i + 1} mean`);
    close(r.stddev, want.stddev, `tab ${i + 1} stddev`);
    check(/^\d{4} \d{4} \d{4}$/.test(r.code), `tab ${i + 1} safety code format: ${r.code}`);
    check(r.code === results[0].code, `tab ${i + 1} safety code ${r.code} != ${results[0].code}`);
    const status = await tabs[i].getByTestId('status').textContent();
    check(status.startsWith('Result ready: 3 patients'), `tab ${i + 1} status: ${status}`);
  }
  log(`3 tabs: count 3, sum ${results[0].sum}, mean ${results[0].mean}, sd ${results[0].stddev}, code ${results[0].code}`);

  const dr = await dashResult(dash, 'e2e', results[0].round);
  check(dr.count === 3, `dashboard count ${dr.count}`);
  close(dr.sum, want.sum, 'dashboard sum');
  close(dr.mean, want.mean, 'dashboard mean');
  close(dr.stddev, want.stddev, 'dashboard stddev');
  check(dr.code === results[0].code && dr.dataCode === results[0].code, `dashboard safety code ${dr.code} != ${results[0].code}`);
  log('dashboard shows the same result and safety code');

  await tabs[0].screenshot({ path: join(outDir, 'patient.png'), fullPage: true });
  await dash.screenshot({ path: join(outDir, 'dashboard.png'), fullPage: true });

  // 4. No value anywhere in clear.
  for (const p of tabs) {
    check(!values.some((v) => p.url().includes(v)), `value in URL ${p.url()}`);
    // sessionStorage holds only the rounds this tab took part in (replay protection), no value.
    const stored = await p.evaluate(() => [localStorage.length,
      Object.keys(sessionStorage).filter((k) => !k.startsWith('cohort-seen-rounds:')).length, document.cookie,
      Object.values(sessionStorage).join(' ')]);
    check(stored[0] === 0 && stored[1] === 0 && stored[2] === '' && !values.some((v) => stored[3].includes(v)),
      `patient storage ${JSON.stringify(stored)}`);
  }
  const frames = traffic.filter((t) => t.kind === 'sent');
  check(frames.filter((t) => t.page.startsWith('patient')).length >= 9, 'patients sent their frames');
  for (const t of traffic) {
    for (const v of values) check(!t.text.includes(v), `${t.page} ${t.kind} carries ${v}: ${t.text.slice(0, 200)}`);
  }
  log(`no value in ${traffic.length} requests and frames, URLs or storage`);

  // 5. A dropped connection is explained, and the tab rejoins. The tab's socket goes through a
  // Playwright WebSocket route (forwarded to the relay as is), so the test can cut it.
  const drop = tabs[2];
  let route = null;
  let server = null;
  await drop.routeWebSocket(/\/ws(\?|$)/, (ws) => {
    server = ws.connectToServer();
    route = ws;
  });
  await drop.locator('#again').click();
  await drop.getByTestId('status').getByText('Waiting for patients: 1 of 3 joined').waitFor({ timeout: T });
  check(route !== null, 'the socket went through the route');
  await route.close({ code: 1001, reason: 'e2e: connection cut' });
  await server.close({ code: 1001, reason: 'e2e: connection cut' });
  await drop.getByTestId('status').getByText('The connection to the hospital was lost while waiting for other patients.').waitFor({ timeout: T });
  await drop.locator('#problem-text').getByText('Only your public key had been sent, never your value.', { exact: false }).waitFor({ timeout: T });
  check(await drop.locator('#rejoin').isVisible(), 'rejoin offered');
  await drop.locator('#rejoin').click();
  await drop.getByTestId('status').getByText(/Waiting for patients: \d of 3 joined/).waitFor({ timeout: T });
  log('dropped connection explained; rejoined');
  await drop.locator('#leave').click();
  await drop.getByTestId('status').getByText('You left the study.', { exact: false }).waitFor({ timeout: T });
  log('left the study');

  // 6. Invite codes; start early from the dashboard; downloads.
  for (const [k, v] of Object.entries({ id: 'early', question: 'How many steps today?', unit: 'steps', min: '0', max: '50000', decimals: '0', buckets: '5', size: '5', threshold: '3', min_cohort: '2', invite: 'letmein' })) {
    await dash.locator(`#f-${k}`).fill(v);
  }
  await dash.getByTestId('create').click();
  const early = dash.locator('article[data-study="early"]');
  await early.waitFor({ timeout: T });
  log('created study early (invite code required)');
  const steps = ['4000', '9000'];
  for (let i = 0; i < 2; i++) {
    await tabs[i].goto(`${base}?study=early`);
    await tabs[i].getByTestId('value').fill(steps[i]);
    await tabs[i].locator('#invite').fill(i === 0 ? 'wrong' : 'letmein');
    await tabs[i].getByTestId('join').click();
  }
  await tabs[0].getByTestId('status').getByText('The hospital turned this down.').waitFor({ timeout: T });
  await tabs[0].locator('#problem-text').getByText('This study needs a valid invite code.').waitFor({ timeout: T });
  await tabs[0].locator('#invite').fill('letmein');
  await tabs[0].locator('#rejoin').click();
  log('a wrong invite code is explained; the right one joins');
  await early.getByTestId('dash-enrolled').getByText('2 of 5').waitFor({ timeout: T });
  await early.getByTestId('dash-start').click();
  const er = await Promise.all(tabs.slice(0, 2).map(resultOf));
  const ew = stats(steps);
  for (const r of er) {
    check(r.count === 2, `early count ${r.count}`);
    close(r.mean, ew.mean, 'early mean');
    check(r.code === er[0].code, 'early safety codes agree');
  }
  const edr = await dashResult(dash, 'early', er[0].round);
  check(edr.count === 2 && edr.code === er[0].code, 'dashboard early result');
  log('dashboard started a round early with 2 of 5');

  const e2eCard = dash.locator('article[data-study="e2e"]');
  const [csvDl] = await Promise.all([dash.waitForEvent('download'), e2eCard.getByTestId('dash-csv').click()]);
  const csv = readFileSync(await csvDl.path(), 'utf8').trim().split('\n');
  check(csvDl.suggestedFilename() === 'e2e-results.csv', `csv name ${csvDl.suggestedFilename()}`);
  // One row per statistic (issue 11): study,round,finished_at_ms,question,with,option,bucket,statistic,value.
  check(csv[0] === 'study,round,finished_at_ms,question,with,option,bucket,statistic,value', `csv header: ${csv[0]}`);
  check(csv.some((l) => l.endsWith(`,safety_code,${results[0].code}`)), `csv safety code: ${csv.join(' | ')}`);
  const csvMean = csv.find((l) => /^e2e,\d+,\d+,value,,,,mean,/.test(l));
  check(csvMean, `csv mean row: ${csv.join(' | ')}`);
  close(Number(csvMean.split(',').pop()), want.mean, 'csv mean');
  const [jsonDl] = await Promise.all([dash.waitForEvent('download'), e2eCard.getByTestId('dash-json').click()]);
  const rows = JSON.parse(readFileSync(await jsonDl.path(), 'utf8'));
  check(rows.length === 1 && rows[0].count === 3 && rows[0].safety_code === results[0].code, 'json download');
  close(rows[0].mean, want.mean, 'json mean');
  log('CSV and JSON downloads match');

  // 7. A questionnaire study built in the dashboard (small cells shown).
  const wantStudy = {
    id: 'survey', size: 3, suppress_small_cells: false,
    questions: [
      { id: 'height', kind: 'number', text: 'How tall are you?', unit: 'cm', min: 100, max: 230, decimals: 1, buckets: 13 },
      { id: 'weight', kind: 'number', text: 'How much do you weigh?', unit: 'kg', min: 30, max: 200, decimals: 1, buckets: 17 },
      { id: 'smoker', kind: 'choice', text: 'Do you smoke?', options: ['no', 'yes', 'used to'] },
      { id: 'sleep', kind: 'number', text: 'How many hours do you sleep a night?', unit: 'h', min: 0, max: 24, decimals: 1, buckets: 12, optional: true },
    ],
  };
  await dash.setViewportSize({ width: 1100, height: 900 });
  if (!(await dash.locator('#create').evaluate((e) => e.open))) await dash.locator('#create > summary').click();
  await dash.locator('#f-id').fill('survey');
  await dash.locator('#f-size').fill('3');
  await dash.getByTestId('f-suppress').uncheck();
  const fillNumber = async (n, q) => {
    for (const k of ['id', 'text', 'unit', 'min', 'max', 'decimals', 'buckets']) await dash.getByTestId(`q${n}-${k}`).fill(String(q[k]));
    if (q.optional) await dash.getByTestId(`q${n}-optional`).check();
  };
  // Built out of order on purpose: sleep first, then moved down; a stray question removed.
  await dash.getByTestId('add-number').click();
  check(await dash.evaluate(() => document.activeElement?.id) === 'b0-id', 'a new question gets the focus');
  await fillNumber(1, wantStudy.questions[3]);
  await dash.getByTestId('add-number').click();
  await fillNumber(2, wantStudy.questions[0]);
  await dash.getByTestId('add-choice').click();
  await dash.getByTestId('q3-id').fill('stray');
  await dash.getByTestId('add-number').click();
  await fillNumber(4, wantStudy.questions[1]);
  await dash.getByTestId('add-choice').click();
  await dash.getByTestId('q5-id').fill('smoker');
  await dash.getByTestId('q5-text').fill('Do you smoke?');
  await dash.getByTestId('q5-options').fill('no\nyes\n\nused to\n');
  await dash.getByTestId('q3-remove').click();
  await dash.getByTestId('q1-down').click(); // sleep is 2nd, height 1st
  await dash.getByTestId('q2-down').press('Enter'); // keyboard: sleep 3rd
  await dash.getByTestId('q3-down').press('Enter'); // sleep 4th, the choice 3rd
  check(!(await dash.locator('#f-question').isVisible()), 'the single-question fields are hidden with questions');
  await dash.getByTestId('q3-optional').check();
  await dash.getByTestId('q3-optional').uncheck();
  const shownJson = await dash.getByTestId('json-preview').textContent();
  check(JSON.stringify(JSON.parse(shownJson)) === JSON.stringify(wantStudy), `builder JSON:\n${shownJson}`);
  await dash.getByTestId('q2-min').fill('300');
  await dash.locator('#create-error').getByText(/weight/).waitFor({ timeout: T });
  check(await dash.getByTestId('create').isDisabled(), 'create disabled for a bad question');
  await dash.getByTestId('q2-min').fill('30');
  await dash.locator('#create').screenshot({ path: join(outDir, 'dashboard-builder.png') });
  const [posted] = await Promise.all([
    dash.waitForRequest((r) => r.method() === 'POST' && r.url().endsWith('/api/studies')),
    dash.getByTestId('create').click(),
  ]);
  check(posted.postData() === shownJson, 'the body POSTed is the JSON shown');
  await dash.locator('article[data-study="survey"]').waitFor({ timeout: T });
  await dash.locator('#create-ok').getByText('Study “survey” created.', { exact: false }).waitFor({ timeout: T });
  check(await dash.getByTestId('json-preview').isHidden(), 'the JSON preview is hidden again');
  check(await dash.locator('#f-question').isVisible(), 'the single-question fields are back');
  log('dashboard built the questionnaire (added, moved, removed questions) and POSTed the JSON it showed');
  const survey = [
    { height: '160.5', weight: '55.2', smoker: 'no', sleep: '7.5' },
    { height: '175', weight: '72.4', smoker: 'yes', sleep: null },
    { height: '188.3', weight: '90.1', smoker: 'no', sleep: '6' },
  ];
  await Promise.all(tabs.map((p) => p.goto(`${base}?study=survey`)));
  const q1 = tabs[0];
  await q1.getByTestId('answer-height').waitFor({ state: 'visible', timeout: T });
  check(await q1.getByLabel('How tall are you? (in cm)').getAttribute('data-testid') === 'answer-height', 'a number field is labelled by its question');
  check(await q1.getByRole('radio', { name: 'used to' }).getAttribute('data-testid') === 'answer-smoker-used to', 'an option is labelled by its text');
  await q1.getByTestId('answer-height').fill('99');
  await q1.getByTestId('answer-height').blur();
  await q1.locator('fieldset[data-question="height"] .field-error').getByText("Outside the study's allowed range.", { exact: true }).waitFor({ timeout: T });
  await q1.getByTestId('answer-weight').fill('55.25');
  await q1.getByTestId('answer-weight').blur();
  await q1.locator('fieldset[data-question="weight"] .field-error').getByText('Too many digits after the decimal point (at most 1).', { exact: true }).waitFor({ timeout: T });
  // Joining checks every answer first: the unanswered required choice is marked too, the
  // optional one asks for an answer or "prefer not to say", and nothing is sent.
  await q1.getByTestId('answer-height').press('Enter');
  await q1.locator('fieldset[data-question="smoker"] .field-error').getByText('This question needs an answer.', { exact: true }).waitFor({ timeout: T });
  await q1.locator('fieldset[data-question="sleep"] .field-error').getByText('Answer, or choose “Prefer not to say”.', { exact: true }).waitFor({ timeout: T });
  await q1.locator('#form-error').getByText('Please check the answers marked above.').waitFor({ timeout: T });
  check(await q1.evaluate(() => document.activeElement?.dataset.testid) === 'answer-height', 'focus on the first problem');
  check(!traffic.some((t) => t.page === 'patient 1' && t.kind === 'ws-url' && t.text.includes('survey')), 'no socket before the answers are valid');
  log('questionnaire answers checked per question before joining');
  for (const [i, a] of survey.entries()) {
    const p = tabs[i];
    await p.getByTestId('answer-height').fill(a.height);
    await p.getByTestId('answer-weight').fill(a.weight);
    if (i === 2) {
      // Keyboard: Space picks the focused option.
      await p.getByTestId(`answer-smoker-${a.smoker}`).focus();
      await p.keyboard.press('Space');
      check(await p.getByTestId(`answer-smoker-${a.smoker}`).isChecked(), 'a radio button picked with the keyboard');
    } else {
      await p.getByTestId(`answer-smoker-${a.smoker}`).check();
    }
    if (a.sleep === null) await p.getByTestId('skip-sleep').check();
    else await p.getByTestId('answer-sleep').fill(a.sleep);
    check(await p.getByTestId('answer-sleep').isDisabled() === (a.sleep === null), `tab ${i + 1}: sleep field follows "prefer not to say"`);
    await p.getByTestId('join').click();
  }
  const qres = await Promise.all(tabs.map(resultOf));
  const num = (k) => survey.map((a) => a[k]).filter((v) => v !== null).map(Number);
  const wantQ = { height: describe(num('height')), weight: describe(num('weight')), sleep: describe(num('sleep')) };
  const both = (x, y) => survey.filter((a) => a[x] !== null && a[y] !== null);
  const wantPairs = [['height', 'weight'], ['height', 'sleep'], ['weight', 'sleep']].map(([x, y]) => ({
    x, y, ...fit(both(x, y).map((a) => Number(a[x])), both(x, y).map((a) => Number(a[y]))),
  }));
  const ranges = { height: { min: 100, max: 230 }, weight: { min: 30, max: 200 }, sleep: { min: 0, max: 24 } };
  function checkQuestionnaire(shown, who) {
    for (const [id, w] of Object.entries(wantQ)) {
      const t = shown.tiles.find((x) => x.question === id);
      check(t, `${who}: tile ${id}`);
      check(Number(t.count) === w.count, `${who}: ${id} count ${t.count}`);
      near(t.mean, w.mean, `${who}: ${id} mean`);
      near(t.stddev, w.stddev, `${who}: ${id} stddev`);
      near(t.sum, w.sum, `${who}: ${id} sum`);
    }
    const smoker = shown.tiles.find((x) => x.question === 'smoker');
    check(smoker && Number(smoker.count) === 3, `${who}: smoker answered by 3`);
    for (const [o, c] of [['no', 2], ['yes', 1], ['used to', 0]]) {
      const row = shown.options.find((x) => x.id === `q-smoker-${o}`);
      check(row && Number(row.count) === c, `${who}: smoker ${o}: ${JSON.stringify(row)}`);
    }
    for (const w of wantPairs) {
      const row = shown.pairs.find((x) => x.id === `pair-${w.x}-${w.y}`);
      check(row && Number(row.n) === w.n, `${who}: pair ${w.x}/${w.y} n: ${JSON.stringify(row)}`);
      near(row.r, w.r, `${who}: ${w.x}/${w.y} r`, 1e-6);
      near(row.slope, w.slope, `${who}: ${w.x}/${w.y} slope`, 1e-6);
      near(row.intercept, w.intercept, `${who}: ${w.x}/${w.y} intercept`, 1e-6);
      // The line: x over the x question's range, clipped to the y question's range.
      const line = shown.lines.find((x) => x.id === `line-${w.x}-${w.y}`);
      check(line, `${who}: line ${w.x}/${w.y} drawn`);
      const rx = ranges[w.x];
      const ry = ranges[w.y];
      const at = (v) => w.slope * v + w.intercept;
      const inv = (v) => (v - w.intercept) / w.slope;
      const lo = Math.max(rx.min, Math.min(inv(ry.min), inv(ry.max)));
      const hi = Math.min(rx.max, Math.max(inv(ry.min), inv(ry.max)));
      near(line.x1, lo, `${who}: ${w.x}/${w.y} line x1`, 1e-6);
      near(line.x2, hi, `${who}: ${w.x}/${w.y} line x2`, 1e-6);
      near(line.y1, Math.min(ry.max, Math.max(ry.min, at(lo))), `${who}: ${w.x}/${w.y} line y1`, 1e-6);
      near(line.y2, Math.min(ry.max, Math.max(ry.min, at(hi))), `${who}: ${w.x}/${w.y} line y2`, 1e-6);
    }
    const noHeight = shown.byOption.find((x) => x.id === 'by-smoker-height-no');
    check(noHeight && Number(noHeight.n) === 2, `${who}: by option smoker=no height n`);
    near(noHeight.mean, (160.5 + 188.3) / 2, `${who}: by option smoker=no height mean`);
    check(shown.caption.includes('small-cell suppression is off'), `${who}: caption says small cells are shown`);
  }
  for (const [i, r] of qres.entries()) {
    check(r.count === 3 && r.code === qres[0].code, `questionnaire tab ${i + 1}: count ${r.count}, code ${r.code}`);
    checkQuestionnaire(await questionnaireShown(tabs[i].getByTestId('result')), `tab ${i + 1}`);
  }
  log(`3 tabs show the questionnaire's statistics, option counts, r/slope/intercept and lines (height×weight r ${wantPairs[0].r.toFixed(4)})`);
  const qdash = dash.locator(`article[data-study="survey"] [data-testid="dash-result"][data-round="${qres[0].round}"]`);
  await qdash.waitFor({ state: 'visible', timeout: T });
  await qdash.locator('line[data-testid="line-height-weight"]').waitFor({ state: 'attached', timeout: T });
  checkQuestionnaire(await questionnaireShown(qdash), 'dashboard');
  log('the dashboard shows the same questionnaire result');
  // The same from the relay's store (GET /api/studies/survey/rounds after a reload).
  await dash.reload();
  await qdash.locator('line[data-testid="line-height-weight"]').waitFor({ state: 'attached', timeout: T });
  checkQuestionnaire(await questionnaireShown(qdash), 'dashboard after a reload');
  log('and so does the dashboard from the stored round, after a reload');
  await tabs[0].screenshot({ path: join(outDir, 'patient-questionnaire.png'), fullPage: true });
  await tabs[1].screenshot({ path: join(outDir, 'patient-questionnaire-skipped.png'), fullPage: true });
  await dash.locator('article[data-study="survey"]').screenshot({ path: join(outDir, 'dashboard-questionnaire.png') });

  // 7b. The same questionnaire with small-cell suppression on (the default): "< 3".
  await Promise.all(tabs.map((p) => p.goto(`${base}?study=survey-k`)));
  for (const [i, a] of survey.entries()) {
    const p = tabs[i];
    await p.getByTestId('answer-height').fill(a.height);
    await p.getByTestId('answer-weight').fill(a.weight);
    await p.getByTestId(`answer-smoker-${a.smoker}`).check();
    if (a.sleep === null) await p.getByTestId('skip-sleep').check();
    else await p.getByTestId('answer-sleep').fill(a.sleep);
    await p.getByTestId('join').click();
  }
  await Promise.all(tabs.map(resultOf));
  const ks = await questionnaireShown(tabs[0].getByTestId('result'));
  const yes = ks.options.find((x) => x.id === 'q-smoker-yes');
  check(yes && yes.suppressed === 'true' && yes.text.includes('< 3') && yes.count === undefined, `suppressed cell: ${JSON.stringify(yes)}`);
  const sleepTile = ks.tiles.find((x) => x.question === 'sleep');
  check(sleepTile.suppressed === 'true' && !sleepTile.mean, `sleep (2 answers) withheld: ${JSON.stringify(sleepTile)}`);
  check(ks.caption.includes('“< 3” stands for 1 to 2 answers'), `caption: ${ks.caption}`);
  check(Number(ks.tiles.find((x) => x.question === 'height').count) === 3, 'height count 3 shown');
  log('with suppression on, small cells show "< 3"');
  await tabs[0].screenshot({ path: join(outDir, 'patient-questionnaire-suppressed.png'), fullPage: true });
  await tabs[2].goto(`${base}?study=survey`);
  await tabs[2].getByTestId('answer-height').waitFor({ state: 'visible', timeout: T });
  await tabs[2].setViewportSize({ width: 390, height: 844 });
  await tabs[2].screenshot({ path: join(outDir, 'patient-questionnaire-form-phone.png'), fullPage: true });
  check(await tabs[2].evaluate(() => document.documentElement.scrollWidth) <= 390, 'questionnaire form fits a phone');

  // 7c. A patient with modified code (run.sh's cohort-forger, out-of-range value) beside three
  // tabs in a Shamir 3-of-4 study with validity proofs: every tab and the dashboard name it as
  // left out, and the three tabs' statistics are exact.
  await tabs[2].setViewportSize({ width: 1100, height: 900 });
  const fvalues = ['160.2', '175.8', '190.4'];
  const fwant = stats(fvalues);
  await Promise.all(tabs.map((p) => p.goto(`${base}?study=forge`)));
  await tabs[0].getByTestId('value').waitFor({ state: 'visible', timeout: T });
  const meta = tabs[0].locator('#study-meta');
  check((await meta.getAttribute('data-proofs')) === 'on', 'the page says validity proofs are on');
  check((await meta.textContent()).includes('proves its answers are valid'), 'the page explains the proofs');
  const forger = spawn(process.env.COHORT_FORGER, [
    '--relay', `${base.replace('https:', 'wss:')}ws`, '--ca', process.env.COHORT_CA,
    '--study', 'forge', '--value', '150.0', '--forge', 'out-of-range', '--timeout-s', '60',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let forgerErr = '';
  forger.stderr.on('data', (b) => { forgerErr += b; });
  const forgerDone = new Promise((resolve) => forger.on('close', resolve));
  for (let i = 0; i < 3; i++) {
    await tabs[i].getByTestId('value').fill(fvalues[i]);
    await tabs[i].getByTestId('join').click();
  }
  const fres = await Promise.all(tabs.map(resultOf));
  const forgerCode = await forgerDone;
  const forgerIndex = Number((/excluded: #(\d+) \(invalid_proof\)/.exec(forgerErr) ?? [])[1]);
  check(forgerCode === 0 && forgerIndex > 0, `forger exit ${forgerCode}, its exclusion seen: ${forgerErr}`);
  for (const [i, r] of fres.entries()) {
    check(r.count === 3, `forge tab ${i + 1} count ${r.count}`);
    close(r.mean, fwant.mean, `forge tab ${i + 1} mean`);
    close(r.stddev, fwant.stddev, `forge tab ${i + 1} stddev`);
    const note = tabs[i].getByTestId('excluded');
    check((await note.getAttribute('data-excluded')) === `${forgerIndex}:invalid_proof`, `tab ${i + 1} names the forger`);
    check((await note.textContent()).includes('validity proof failed'), `tab ${i + 1} says why`);
    const checked = tabs[i].locator('#steps li[data-step="checked"]');
    check(await checked.isVisible() && ((await checked.getAttribute('class')) ?? '').includes('done'),
      `tab ${i + 1} shows the step "Answers checked" done`);
  }
  const fdash = dash.locator(`article[data-study="forge"] [data-testid="dash-result"][data-round="${fres[0].round}"]`);
  await fdash.waitFor({ state: 'visible', timeout: T });
  check((await fdash.getByTestId('excluded').getAttribute('data-excluded')) === `${forgerIndex}:invalid_proof`, 'the dashboard names the forger');
  const proofsChip = dash.locator('article[data-study="forge"] [data-testid="dash-proofs"]');
  check((await proofsChip.textContent()) === 'validity proofs on', 'the dashboard says the study has validity proofs');
  log(`a forger (#${forgerIndex}, out of range) was left out; 3 tabs and the dashboard show it and the exact result`);
  await tabs[0].screenshot({ path: join(outDir, 'patient-forger-excluded.png'), fullPage: true });

  // 8. Screenshots at phone width.
  await tabs[0].setViewportSize({ width: 390, height: 844 });
  await tabs[0].screenshot({ path: join(outDir, 'patient-phone.png'), fullPage: true });
  await dash.setViewportSize({ width: 390, height: 844 });
  await dash.screenshot({ path: join(outDir, 'dashboard-phone.png'), fullPage: true });
  const widths = await Promise.all([tabs[0], dash].map((p) => p.evaluate(() => document.documentElement.scrollWidth)));
  check(widths.every((w) => w <= 390), `no horizontal scrolling at phone width: ${widths}`);

  check(problems.length === 0, `console/page errors:\n  ${problems.join('\n  ')}`);
  log(`ALL OK; screenshots in ${outDir}`);
} catch (e) {
  failed = true;
  console.error(`e2e FAILED: ${e.message}`);
  if (problems.length) console.error(`console/page errors:\n  ${problems.join('\n  ')}`);
  try {
    for (const [i, p] of browser.contexts()[0].pages().entries()) {
      await p.screenshot({ path: join(outDir, `failure-${i}.png`), fullPage: true });
    }
    console.error(`failure screenshots in ${outDir}`);
  } catch {
    // best effort
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
