// The hospital dashboard: studies, live enrolment (/ws/dashboard), starting rounds, results,
// downloads and the relay's safety code. The admin token lives in sessionStorage at most.

import { bucketEdges, checkStudyJson, checkStudySpec } from '../pkg/cohort_web.js';
import { loadWasm } from './wasm.js';
import { histogram } from './chart.js';
import { $, el, replace, show } from './dom.js';
import { human, patients, plain, rangeText } from './format.js';
import { exclusionNote, isQuestionnaire, questionnaireView, questionsText, smallCellLimit } from './results.js';

const TOKEN_KEY = 'cohort.adminToken';
const SPEC_KEYS = ['id', 'question', 'unit', 'min', 'max', 'decimals', 'buckets', 'size', 'threshold',
  'colluders', 'min_cohort', 'enrol_s', 'shares_s', 'partials_s', 'invite'];
/** The single-question keys: unused (and hidden) once the builder has questions. */
const SINGLE_KEYS = ['question', 'unit', 'min', 'max', 'decimals', 'buckets'];
/** Study keys whose JSON value is a number. */
const NUMBER_KEYS = ['size', 'threshold', 'colluders', 'min_cohort', 'enrol_s', 'shares_s', 'partials_s', 'decimals', 'buckets'];

const ui = {
  conn: $('conn'),
  signout: $('signout'),
  login: $('login'),
  loginForm: $('login-form'),
  token: $('token'),
  loginError: $('login-error'),
  create: $('create'),
  createForm: $('create-form'),
  preview: $('spec-preview'),
  createError: $('create-error'),
  createOk: $('create-ok'),
  createButton: $('create-button'),
  qList: $('q-list'),
  addNumber: $('add-number'),
  addChoice: $('add-choice'),
  suppress: $('f-suppress'),
  jsonPreview: $('json-preview'),
  note: $('dash-note'),
  studies: $('studies'),
};

let token = null;
/** id → {status: StudyStatus, rounds: [RoundRow], error: string} */
const studies = new Map();
let ws = null;
let retry = 0;
let retryTimer = 0;
let wasmReady = false;
/** The questionnaire being built: [{kind, id, text, unit, min, max, decimals, buckets, options, optional}]. */
let draft = [];

main();

async function main() {
  try {
    await loadWasm();
    wasmReady = true;
  } catch (e) {
    console.warn(`cohort: wasm did not load (${e.message}); study specs are checked by the relay only`);
  }
  ui.loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = ui.token.value.trim();
    if (t) signIn(t);
  });
  ui.signout.addEventListener('click', signOut);
  addColludersField();
  for (const input of ui.createForm.querySelectorAll('input')) input.addEventListener('input', updateSpec);
  ui.addNumber.addEventListener('click', () => addQuestion('number'));
  ui.addChoice.addEventListener('click', () => addQuestion('choice'));
  ui.createForm.addEventListener('submit', (e) => {
    e.preventDefault();
    createStudy();
  });
  updateSpec();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showLogin('');
}

// ---- authentication ----

function showLogin(message) {
  show(ui.login, true);
  show(ui.create, false);
  show(ui.signout, false);
  show(ui.conn, false);
  show(ui.note, false);
  replace(ui.studies);
  ui.loginError.textContent = message;
  ui.token.focus();
}

async function signIn(t) {
  token = t;
  ui.loginError.textContent = '';
  let list;
  try {
    list = await api('GET', '/api/studies');
  } catch (e) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(e.status === 401 ? 'The relay did not accept this token.' : `Could not reach the relay: ${e.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, t);
  ui.token.value = '';
  show(ui.login, false);
  show(ui.create, true);
  show(ui.signout, true);
  show(ui.conn, true);
  studies.clear();
  for (const s of list) studies.set(s.params.id, { status: s, rounds: [], error: '' });
  renderAll();
  for (const id of studies.keys()) loadRounds(id);
  connect();
}

function signOut() {
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(retryTimer);
  if (ws) {
    const w = ws;
    ws = null;
    w.close(1000, 'signed out');
  }
  studies.clear();
  showLogin('');
}

/** Calls the admin API; throws an Error with `.status` and the relay's message. */
async function api(method, path, body, raw = false) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, {
    method, headers, cache: 'no-store', body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
  });
  const type = res.headers.get('Content-Type') || '';
  const data = type.includes('json') ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    const err = new Error((data && data.error) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

// ---- live feed ----

function setConn(state, text) {
  ui.conn.dataset.state = state;
  ui.conn.textContent = text;
}

function feedLive() {
  return ws !== null && ui.conn.dataset.state === 'live';
}

function connect() {
  if (!token) return;
  setConn('off', 'connecting…');
  const w = new WebSocket(`wss://${location.host}/ws/dashboard`);
  ws = w;
  w.addEventListener('open', () => {
    w.send(JSON.stringify({ type: 'auth', token }));
  });
  w.addEventListener('message', (ev) => {
    if (ws !== w) return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    retry = 0;
    setConn('live', 'live');
    onFeed(msg);
  });
  w.addEventListener('close', (ev) => {
    if (ws !== w) return;
    ws = null;
    if (ev.code === 4401) {
      signOut();
      showLogin('The relay did not accept this token.');
      return;
    }
    setConn('down', 'connection lost, retrying…');
    retry = Math.min(retry + 1, 6);
    retryTimer = setTimeout(connect, 500 * 2 ** retry);
  });
}

/**
 * Every feed frame carries whole statuses (docs/API.md, /ws/dashboard): a `snapshot` of every
 * study, or one study's `status` with the round that just `ended` (a RoundRow-like object), if
 * any. Nothing is replayed here: the page shows what it is given.
 */
function onFeed(msg) {
  switch (msg.type) {
    case 'snapshot':
      for (const s of msg.studies) upsert(s);
      renderAll();
      break;
    case 'status': {
      const id = msg.study.params.id;
      const known = studies.has(id);
      upsert(msg.study);
      if (msg.ended) addRound(id, msg.ended);
      if (known) {
        render(id);
      } else {
        renderAll();
        loadRounds(id);
      }
      break;
    }
    default:
      break;
  }
}

function upsert(status) {
  const id = status.params.id;
  const st = studies.get(id);
  if (st) st.status = status;
  else studies.set(id, { status, rounds: [], error: '' });
}

/** Adds (or replaces) a round that ended, keeping the rounds in order. */
function addRound(id, row) {
  const st = studies.get(id);
  st.rounds = st.rounds.filter((x) => x.round !== row.round);
  st.rounds.push(row);
  st.rounds.sort((a, b) => a.round - b.round);
}

async function loadRounds(id) {
  try {
    const rounds = await api('GET', `/api/studies/${encodeURIComponent(id)}/rounds`);
    const st = studies.get(id);
    if (st) {
      st.rounds = rounds;
      render(id);
    }
  } catch (e) {
    console.warn(`cohort: rounds of ${id}: ${e.message}`);
  }
}

// ---- actions ----

async function startRound(id) {
  const st = studies.get(id);
  st.error = '';
  try {
    const status = await api('POST', `/api/studies/${encodeURIComponent(id)}/start`);
    // The live feed already brought this status and maybe newer ones (a fast round can end
    // before this reply is read): only use the reply without the feed.
    if (!feedLive()) st.status = status;
  } catch (e) {
    st.error = `Could not start: ${e.message}.`;
  }
  render(id);
}

async function download(id, kind) {
  const st = studies.get(id);
  st.error = '';
  try {
    const path = `/api/studies/${encodeURIComponent(id)}/${kind === 'csv' ? 'results.csv' : 'results'}`;
    const data = await api('GET', path);
    const blob = kind === 'csv'
      ? new Blob([data], { type: 'text/csv' })
      : new Blob([`${JSON.stringify(data, null, 2)}\n`], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: `${id}-results.${kind}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    st.error = `Download failed: ${e.message}.`;
    render(id);
  }
}

/** The `colluders` field (c: patients refuse rosters unless 2t > n + c), next to t. */
function addColludersField() {
  if (ui.createForm.querySelector('[data-key="colluders"]')) return;
  const t = ui.createForm.querySelector('[data-key="threshold"]');
  if (!t) return;
  const input = el('input', { id: 'f-colluders', type: 'text', inputmode: 'numeric', placeholder: '0' });
  input.dataset.key = 'colluders';
  t.parentElement.after(el('div', {},
    el('label', { for: 'f-colluders', text: 'Colluders c (needs 2t > size + c)' }), input));
}

function specFromForm() {
  const parts = [];
  let comma = false;
  for (const key of SPEC_KEYS) {
    const field = ui.createForm.querySelector(`[data-key="${key}"]`);
    if (!field) continue;
    const v = field.value.trim();
    if (v === '') continue;
    if (v.includes(',')) comma = true;
    parts.push(`${key}=${v}`);
  }
  return { spec: parts.join(','), comma };
}

// ---- questionnaire builder ----

function addQuestion(kind) {
  const n = draft.length + 1;
  draft.push(kind === 'number'
    ? { kind, id: `q${n}`, text: '', unit: '', min: '0', max: '100', decimals: '0', buckets: '10', optional: false }
    : { kind, id: `q${n}`, text: '', options: 'yes\nno', optional: false });
  renderBuilder(draft.length - 1, 'id');
  updateSpec();
}

function moveQuestion(i, by) {
  const j = i + by;
  if (j < 0 || j >= draft.length) return;
  [draft[i], draft[j]] = [draft[j], draft[i]];
  renderBuilder(j, by < 0 ? 'up' : 'down');
  updateSpec();
}

function removeQuestion(i) {
  draft.splice(i, 1);
  renderBuilder(Math.min(i, draft.length - 1), 'remove');
  updateSpec();
  if (draft.length === 0) ui.addNumber.focus();
}

/** Redraws the question editors; puts the focus on `field` of question `focusAt`. */
function renderBuilder(focusAt = -1, field = null) {
  const editors = draft.map((q, i) => {
    const pre = `b${i}`;
    const input = (key, label, attrs = {}, cls = undefined) => {
      const e = el('input', { id: `${pre}-${key}`, type: 'text', spellcheck: 'false', autocapitalize: 'off', value: q[key], 'data-testid': `q${i + 1}-${key}`, ...attrs });
      e.value = q[key];
      e.addEventListener('input', () => {
        q[key] = e.value;
        updateSpec();
      });
      return el('div', { class: cls }, el('label', { for: e.id, text: label }), e);
    };
    const optional = el('input', { id: `${pre}-optional`, type: 'checkbox', 'data-testid': `q${i + 1}-optional` });
    optional.checked = q.optional;
    optional.addEventListener('change', () => {
      q.optional = optional.checked;
      updateSpec();
    });
    let fields;
    if (q.kind === 'number') {
      fields = [
        input('id', 'Id'), input('text', 'Question', {}, 'span2'),
        input('unit', 'Unit', { placeholder: 'none' }), input('min', 'Minimum', { inputmode: 'decimal' }),
        input('max', 'Maximum', { inputmode: 'decimal' }), input('decimals', 'Decimals', { inputmode: 'numeric' }),
        input('buckets', 'Histogram buckets', { inputmode: 'numeric' }),
      ];
    } else {
      const ta = el('textarea', { id: `${pre}-options`, rows: 4, spellcheck: 'false', 'data-testid': `q${i + 1}-options` });
      ta.value = q.options;
      ta.addEventListener('input', () => {
        q.options = ta.value;
        updateSpec();
      });
      fields = [
        input('id', 'Id'), input('text', 'Question', {}, 'span2'),
        el('div', { class: 'q-options' }, el('label', { for: ta.id, text: 'Options (one per line, 2 to 20)' }), ta),
      ];
    }
    const n = i + 1;
    const tools = el('div', { class: 'q-tools' },
      el('label', { class: 'check-row', for: optional.id }, optional, 'Optional (“prefer not to say”)'),
      el('span', { class: 'grow' }),
      el('button', { type: 'button', class: 'small', 'data-testid': `q${n}-up`, 'aria-label': `Move question ${n} up`, disabled: i === 0, onclick: () => moveQuestion(i, -1) }, '↑ Up'),
      el('button', { type: 'button', class: 'small', 'data-testid': `q${n}-down`, 'aria-label': `Move question ${n} down`, disabled: i === draft.length - 1, onclick: () => moveQuestion(i, 1) }, '↓ Down'),
      el('button', { type: 'button', class: 'small', 'data-testid': `q${n}-remove`, 'aria-label': `Remove question ${n}`, onclick: () => removeQuestion(i) }, 'Remove'));
    return el('fieldset', { class: 'q-edit', 'data-testid': `q-edit-${n}` },
      el('legend', { text: `Question ${n}: ${q.kind === 'number' ? 'a number' : 'one of several options'}` }),
      el('div', { class: 'form-grid' }, fields), tools);
  });
  replace(ui.qList, editors);
  for (const key of SINGLE_KEYS) {
    const f = ui.createForm.querySelector(`[data-key="${key}"]`);
    if (f) show(f.parentElement, draft.length === 0);
  }
  if (focusAt >= 0 && field) {
    const target = field === 'id' ? `#b${focusAt}-id`
      : `[data-testid="q${focusAt + 1}-${field === 'remove' ? 'remove' : field}"]`;
    let e = ui.qList.querySelector(target);
    if (e && e.disabled) e = ui.qList.querySelector(`[data-testid="q${focusAt + 1}-${field === 'up' ? 'down' : 'up'}"]`);
    e?.focus();
  }
}

/** A JSON number for plain decimal text, the text itself otherwise (the relay says what is wrong). */
function jsonNumber(v) {
  return /^-?\d+(\.\d+)?$/.test(v) && String(Number(v)) === v ? Number(v) : v;
}

/** The study as JSON (POST /api/studies), or null when the text form (`{spec}`) is enough. */
function studyJson() {
  if (draft.length === 0 && ui.suppress.checked) return null;
  const study = {};
  for (const key of SPEC_KEYS) {
    if (draft.length > 0 && SINGLE_KEYS.includes(key)) continue;
    const field = ui.createForm.querySelector(`[data-key="${key}"]`);
    const v = field ? field.value.trim() : '';
    if (v === '') continue;
    study[key] = NUMBER_KEYS.includes(key) || key === 'min' || key === 'max' ? jsonNumber(v) : v;
  }
  if (!ui.suppress.checked) study.suppress_small_cells = false;
  if (draft.length > 0) {
    study.questions = draft.map((q) => {
      const out = { id: q.id.trim(), kind: q.kind, text: q.text.trim() };
      if (q.kind === 'number') {
        if (q.unit.trim()) out.unit = q.unit.trim();
        out.min = jsonNumber(q.min.trim());
        out.max = jsonNumber(q.max.trim());
        out.decimals = jsonNumber(q.decimals.trim());
        out.buckets = jsonNumber(q.buckets.trim());
      } else {
        out.options = q.options.split('\n').map((o) => o.trim()).filter((o) => o !== '');
      }
      if (q.optional) out.optional = true;
      return out;
    });
  }
  return JSON.stringify(study, null, 2);
}

/** Checks the form; shows the `--study` spec or the JSON it sends. The body to POST, or null. */
function updateSpec() {
  const json = studyJson();
  show(ui.jsonPreview, json !== null);
  show(ui.preview, json === null);
  if (json !== null) {
    ui.jsonPreview.textContent = json;
    ui.createOk.textContent = '';
    const hasId = ui.createForm.querySelector('[data-key="id"]').value.trim() !== '';
    const problem = !hasId ? '' : wasmReady ? checkStudyJson(json) ?? '' : '';
    ui.createError.textContent = problem ? cap(problem) : '';
    ui.createButton.disabled = !hasId || !!problem;
    return problem || !hasId ? null : json;
  }
  const spec = updateSpecText();
  return spec === null ? null : JSON.stringify({ spec });
}

function updateSpecText() {
  const { spec, comma } = specFromForm();
  ui.preview.textContent = spec ? `--study "${spec}"` : '--study "id=…"';
  ui.createOk.textContent = '';
  let problem = '';
  if (!spec.includes('id=')) problem = '';
  else if (comma) problem = 'Commas cannot be used: the study spec separates its settings with commas.';
  else if (wasmReady) problem = checkStudySpec(spec) ?? '';
  ui.createError.textContent = problem ? cap(problem) : '';
  ui.createButton.disabled = !spec.startsWith('id=') || !!problem;
  return problem ? null : spec;
}

async function createStudy() {
  const body = updateSpec();
  if (!body) return;
  ui.createButton.disabled = true;
  try {
    // Exactly the text shown in the preview (the JSON form), or {"spec": "…"}.
    const status = await api('POST', '/api/studies', body, true);
    const id = status.params.id;
    if (!studies.has(id)) upsert(status); // else the feed already brought it, maybe newer
    renderAll();
    for (const input of ui.createForm.querySelectorAll('input[type="text"]')) input.value = '';
    ui.suppress.checked = true;
    draft = [];
    renderBuilder();
    updateSpec();
    const link = `${location.origin}/?study=${encodeURIComponent(id)}`;
    replace(ui.createOk, `Study “${id}” created. Patients join at `, el('a', { href: link, text: link }), '.');
  } catch (e) {
    ui.createError.textContent = cap(e.message);
    ui.createButton.disabled = false;
  }
}

function cap(s) {
  return s.charAt(0).toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? '' : '.');
}

// ---- rendering ----

function renderAll() {
  const ids = [...studies.keys()].sort();
  const existing = new Map([...ui.studies.children].map((c) => [c.dataset.study, c]));
  for (const [id, node] of existing) if (!studies.has(id)) node.remove();
  for (const id of ids) {
    if (!existing.has(id)) ui.studies.append(el('article', { class: 'card study', dataset: { study: id } }));
    render(id);
  }
  // Keep alphabetical order.
  for (const id of ids) ui.studies.append(ui.studies.querySelector(`[data-study="${CSS.escape(id)}"]`));
  ui.note.textContent = 'No studies yet: create one below.';
  show(ui.note, ids.length === 0);
  if (ids.length === 0) ui.create.open = true;
}

function render(id) {
  const st = studies.get(id);
  const card = ui.studies.querySelector(`[data-study="${CSS.escape(id)}"]`);
  if (!st || !card) return;
  const s = st.status;
  const p = s.params;
  const d = s.deadlines;
  const link = `/?study=${encodeURIComponent(p.id)}`;

  const head = el('div', { class: 'study-head' },
    el('div', {},
      el('p', { class: 'eyebrow', text: `Study ${p.id}` }),
      el('h2', { text: p.question || p.id })),
    el('a', { href: link, class: 'small', text: 'Patient page ↗' }));

  const quest = isQuestionnaire(p);
  const facts = el('ul', { class: 'facts' },
    quest ? el('li', { text: questionsText(p) }) : el('li', { text: rangeText(p) }),
    quest ? null : el('li', { text: `${p.buckets} histogram buckets` }),
    p.suppress_small_cells === false ? el('li', { text: 'small cells shown' }) : null,
    el('li', { text: `groups of ${p.size}` }),
    el('li', { text: `threshold ${p.threshold}, colluders ≤ ${p.colluders ?? 0} (tolerates ${p.size - p.threshold} dropouts)` }),
    el('li', { text: `minimum cohort ${p.min_cohort}` }),
    el('li', { 'data-testid': 'dash-proofs', text: p.proofs === false ? 'validity proofs off' : 'validity proofs on' }),
    el('li', { text: `deadlines: enrol ${d.enrol_ms === null ? 'none' : `${d.enrol_ms / 1000} s`}, shares ${d.shares_ms / 1000} s, sums ${d.partials_ms / 1000} s` }),
    s.invite_required ? el('li', { text: 'invite code required' }) : null);

  const canStart = !s.running && s.enrolled >= p.min_cohort;
  const enrol = el('section', { class: 'panel' },
    el('h4', { text: `Round ${s.enrolling_round}: enrolment` }),
    el('p', { class: 'big', 'data-testid': 'dash-enrolled', text: `${s.enrolled} of ${p.size}` }),
    el('progress', { max: p.size, value: s.enrolled, 'aria-label': 'patients enrolled' }),
    el('p', {
      class: 'muted',
      text: s.running
        ? `Waiting for round ${s.running.round} to finish before this round can start.`
        : `Starts by itself at ${p.size}. You can start it early with ${patients(p.min_cohort)} or more.`,
    }),
    el('button', {
      type: 'button', class: 'primary small', 'data-testid': 'dash-start', disabled: !canStart,
      onclick: () => startRound(id),
    }, 'Start round now'));

  const last = st.rounds.length ? st.rounds[st.rounds.length - 1] : null;
  let roundPanel;
  if (s.running) {
    const r = s.running;
    roundPanel = el('section', { class: 'panel' },
      el('h4', { text: `Round ${r.round}: ${r.phase}` }),
      el('p', { class: 'muted', text: 'Relay safety code' }),
      el('p', { class: 'dash-code', 'data-testid': 'dash-safety-code', dataset: { round: r.round }, text: r.safety_code }),
      el('p', { class: 'muted', text: `Every patient's screen should show this code. ${patients(r.roster_size)}, threshold ${r.threshold}, ${r.live} connected, ${r.received} ${received(r.phase)}.` }));
  } else if (last) {
    roundPanel = el('section', { class: 'panel' },
      el('h4', {}, `Round ${last.round}: `, badge(last.status)),
      el('p', { class: 'muted', text: 'Relay safety code' }),
      el('p', { class: 'dash-code', 'data-testid': 'dash-safety-code', dataset: { round: last.round }, text: last.safety_code }),
      el('p', { class: 'muted', text: last.status === 'completed' ? `Patients saw this code for round ${last.round}.` : `${cap(last.message || 'abandoned')} Nothing was revealed.` }));
  } else {
    roundPanel = el('section', { class: 'panel' },
      el('h4', { text: 'No round yet' }),
      el('p', { class: 'muted', text: 'The safety code appears here when a round starts; patients compare it with theirs.' }));
  }

  const done = st.rounds.filter((x) => x.status === 'completed');
  const latest = done.length ? done[done.length - 1] : null;
  let resultPanel = null;
  if (latest && quest) {
    // A questionnaire's result: the relay's row carries core's QuestionnaireResult.
    const qr = latest.questionnaire ?? latest;
    const edges = wasmReady ? (qid) => Array.from(bucketEdges(JSON.stringify(p), qid)) : null;
    // A relay that stores only a questionnaire round's count gives no per-question statistics.
    const { view, draw } = qr.questions
      ? questionnaireView(p, qr, edges)
      : { view: el('p', { class: 'muted', text: 'This relay did not keep the per-question statistics of this round.' }), draw: () => {} };
    resultPanel = el('section', {
      class: 'panel q-panel', 'data-testid': 'dash-result',
      dataset: { round: plain(latest.round), count: plain(latest.count ?? qr.count), safetyCode: latest.safety_code },
    }, el('h4', { text: `Latest result: round ${latest.round}, ${patients(latest.count ?? qr.count)}` }),
    exclusionNote(latest.excluded), view);
    requestAnimationFrame(draw);
  } else if (latest) {
    const u = (n, digits) => [human(n, digits), p.unit ? el('span', { class: 'u', text: p.unit }) : null];
    const chart = el('div', { class: 'chart-box' });
    resultPanel = el('section', {
      class: 'panel', 'data-testid': 'dash-result',
      dataset: {
        round: plain(latest.round), count: plain(latest.count), sum: plain(latest.sum),
        mean: plain(latest.mean), stddev: plain(latest.stddev), safetyCode: latest.safety_code,
      },
    },
    el('h4', { text: `Latest result: round ${latest.round}` }),
    exclusionNote(latest.excluded),
    el('dl', { class: 'stats' },
      el('div', {}, el('dt', { text: 'Patients' }), el('dd', { text: latest.count })),
      el('div', {}, el('dt', { text: 'Mean' }), el('dd', {}, u(latest.mean, p.decimals + 2))),
      el('div', {}, el('dt', { text: 'Std. deviation' }), el('dd', {}, u(latest.stddev, p.decimals + 2))),
      el('div', {}, el('dt', { text: 'Sum' }), el('dd', {}, u(latest.sum, p.decimals)))),
    el('figure', { class: 'chart' }, chart,
      smallCellLimit(p) > 0 ? el('figcaption', { text: `“< ${smallCellLimit(p)}”: 1 to ${smallCellLimit(p) - 1} values, not shown exactly.` }) : null));
    requestAnimationFrame(() => histogram(chart, {
      counts: latest.histogram, edges: latest.bucket_edges, unit: p.unit, decimals: p.decimals,
      suppressBelow: smallCellLimit(p),
    }));
  }

  const table = st.rounds.length ? el('section', { class: 'rounds' }, el('h4', { class: 'muted', text: 'Rounds' }), el('div', { class: 'table-wrap' }, el('table', {},
    el('thead', {}, el('tr', {},
      el('th', { text: 'Round' }), el('th', { text: 'Status' }), el('th', { class: 'num', text: 'Patients' }),
      el('th', { class: 'num', text: 'Mean' }), el('th', { class: 'num', text: 'Std. dev.' }),
      el('th', { class: 'num', text: 'Sum' }), el('th', { text: 'Safety code' }), el('th', { text: 'Finished' }))),
    el('tbody', {}, [...st.rounds].reverse().map((r) => el('tr', {},
      el('td', { text: r.round }),
      el('td', {}, badge(r.status)),
      el('td', { class: 'num', text: r.count ?? r.questionnaire?.count ?? '–' }),
      el('td', { class: 'num', text: r.mean == null ? '–' : human(r.mean, p.decimals + 2) }),
      el('td', { class: 'num', text: r.stddev == null ? '–' : human(r.stddev, p.decimals + 2) }),
      el('td', { class: 'num', text: r.sum == null ? '–' : human(r.sum, p.decimals) }),
      el('td', { class: 'mono', text: r.safety_code }),
      el('td', { text: r.finished_at_ms ? new Date(r.finished_at_ms).toLocaleString() : '–' }))))))) : null;

  const actions = el('div', { class: 'actions' },
    el('button', { type: 'button', class: 'small', 'data-testid': 'dash-csv', disabled: done.length === 0, onclick: () => download(id, 'csv') }, 'Download CSV'),
    el('button', { type: 'button', class: 'small', 'data-testid': 'dash-json', disabled: done.length === 0, onclick: () => download(id, 'json') }, 'Download JSON'),
    el('span', { class: 'muted', text: `${s.completed_rounds} completed round${s.completed_rounds === 1 ? '' : 's'}` }));

  replace(card,
    head, facts,
    el('div', { class: 'panels' }, enrol, roundPanel, resultPanel),
    st.error ? el('p', { class: 'error-text', role: 'alert', text: st.error }) : null,
    table, actions);
}

/** What `running.received` counts, from the phase as the relay names it: "awaiting shares" →
 * "sent shares". */
function received(phase) {
  return phase.replace(/^awaiting /, 'sent ');
}

function badge(status) {
  return el('span', { class: `badge ${status === 'completed' ? 'ok' : 'warn'}`, text: status });
}
