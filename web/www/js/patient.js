// The patient page. JavaScript owns the WebSocket and the DOM; the wasm Patient (cohort-core's
// machine) owns every byte of protocol and is the only holder of the value once a round starts.
// The value is never put in the URL, in storage, or in any message in clear.

import { Patient, checkAnswer, checkValue, bucketEdges } from '../pkg/cohort_web.js';
import { loadWasm } from './wasm.js';
import { histogram } from './chart.js';
import { $, el, replace, show } from './dom.js';
import { human, patients, plain, rangeText } from './format.js';
import { exclusionNote, isQuestionnaire, proofsText, questionRange, questionnaireView, questionsText, smallCellLimit } from './results.js';


const ui = {
  loading: $('loading'),
  picker: $('picker'),
  pickerNote: $('picker-note'),
  list: $('study-list'),
  study: $('study'),
  studyId: $('study-id'),
  question: $('question'),
  meta: $('study-meta'),
  form: $('join-form'),
  label: $('value-label'),
  value: $('value'),
  unit: $('value-unit'),
  hint: $('value-hint'),
  error: $('value-error'),
  inviteRow: $('invite-row'),
  invite: $('invite'),
  join: $('join'),
  others: $('other-studies'),
  progress: $('progress'),
  status: $('status'),
  steps: $('steps'),
  safety: $('safety'),
  safetyRound: $('safety-round'),
  safetyCode: $('safety-code'),
  problem: $('problem'),
  problemText: $('problem-text'),
  rejoin: $('rejoin'),
  leave: $('leave'),
  result: $('result'),
  resultTitle: $('result-title'),
  again: $('again'),
  singleFields: $('single-fields'),
  questions: $('questions'),
  formError: $('form-error'),
  singleResult: $('single-result'),
  qResult: $('q-result'),
};

/** The study being joined: {params, invite_required, …} from GET /api/public/studies. */
let chosen = null;
let paramsJson = '';
/** The current round's connection: {patient, ws, stage, round, n, timer, over}. */
let session = null;
let checkTimer = 0;
/** A questionnaire study's questions (null for a one-number study), each with its inputs. */
let quest = null;

main();

async function main() {
  try {
    await loadWasm();
  } catch (e) {
    notice(`The program that protects your value could not start in this browser (${e.message}).`, true);
    return;
  }
  ui.form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (validate(true)) start();
  });
  ui.value.addEventListener('input', () => {
    ui.join.disabled = !validate(false);
    clearTimeout(checkTimer);
    checkTimer = setTimeout(() => validate(true), 500);
  });
  ui.value.addEventListener('blur', () => validate(true));
  ui.rejoin.addEventListener('click', () => {
    if (validate(true)) start();
    else ui.value.focus();
  });
  ui.again.addEventListener('click', () => {
    if (validate(true)) start();
  });
  ui.leave.addEventListener('click', leave);
  await loadStudies();
}

function notice(text, isError = false) {
  ui.loading.textContent = text;
  ui.loading.classList.toggle('error', isError);
  show(ui.loading, true);
}

async function loadStudies() {
  let studies;
  try {
    const res = await fetch('/api/public/studies', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    studies = await res.json();
  } catch (e) {
    notice(`Could not load the list of studies from the hospital (${e.message}). Reload the page to try again.`, true);
    return;
  }
  show(ui.loading, false);
  const wanted = new URLSearchParams(location.search).get('study');
  const found = wanted !== null ? studies.find((s) => s.params.id === wanted) : undefined;
  if (found) {
    choose(found, studies.length > 1);
    return;
  }
  if (studies.length === 0) {
    ui.pickerNote.textContent = 'The hospital has no open studies right now.';
  } else if (wanted !== null) {
    ui.pickerNote.textContent = `There is no study called “${wanted}”. These are open:`;
  } else {
    ui.pickerNote.textContent = 'Pick the study the hospital asked you to join.';
  }
  replace(ui.list, studies.map((s) => {
    const p = s.params;
    const href = `/?study=${encodeURIComponent(p.id)}`;
    return el('li', {},
      el('a', { href, class: 'study-link' },
        el('span', { class: 'study-q', text: p.question || p.id }),
        el('span', { class: 'muted', text: `${p.id} · ${isQuestionnaire(p) ? questionsText(p) : rangeText(p)} · groups of ${p.size}` }),
        el('span', { class: 'muted', text: `${s.enrolled} waiting for round ${s.enrolling_round}` })));
  }));
  show(ui.picker, true);
}

function choose(study, others) {
  chosen = study;
  const p = study.params;
  paramsJson = JSON.stringify(p);
  document.title = `cohort · ${p.question || p.id}`;
  ui.studyId.textContent = p.id;
  ui.question.textContent = p.question || `Study ${p.id}`;
  ui.meta.textContent = `Results are shared for groups of ${p.size} (never fewer than ${p.min_cohort}); ` +
    `any ${p.threshold} of them complete a round, and this device refuses a round unless that stays safe ` +
    `with up to ${p.colluders ?? 0} patients colluding with the hospital. ${proofsText(p)}`;
  ui.meta.dataset.proofs = p.proofs === false ? 'off' : 'on';
  ui.steps.querySelector('[data-step="checked"]').hidden = p.proofs === false;
  show(ui.inviteRow, study.invite_required);
  show(ui.others, others);
  if (isQuestionnaire(p)) {
    document.title = `cohort · ${p.id}`;
    ui.question.textContent = `Please answer ${p.questions.length === 1 ? 'this question' : `these ${p.questions.length} questions`}`;
    ui.meta.textContent = `${questionsText(p)}. ${ui.meta.textContent}`;
    buildQuestions(p);
    ui.join.disabled = false;
    show(ui.singleFields, false);
    show(ui.questions, true);
    show(ui.study, true);
    quest[0].focus.focus();
    return;
  }
  ui.label.textContent = p.unit ? `Your value, in ${p.unit}` : 'Your value';
  ui.unit.textContent = p.unit;
  ui.hint.textContent = `Allowed: ${rangeText(p)}.`;
  show(ui.study, true);
  ui.value.focus();
}

/**
 * One fieldset per question: a number field with its range (and a "prefer not to say" box
 * when optional), or one radio button per option (and "prefer not to say" when optional).
 * Like the one-number field, no input has a name that a form could submit, except radio
 * groups, which need one to work as a group; the form is never submitted.
 */
function buildQuestions(p) {
  quest = p.questions.map((q, i) => {
    const errId = `e-${i}`;
    const error = el('p', { id: errId, class: 'field-error', 'aria-live': 'polite' });
    const set = el('fieldset', { class: 'question', dataset: { question: q.id }, 'aria-describedby': errId });
    set.append(el('legend', { text: `${i + 1}. ${q.text || q.id}${q.optional ? ' (optional)' : ''}` }));
    const entry = { q, set, error, touched: false };
    if (q.kind === 'number') {
      const id = `a-${i}`;
      const hintId = `h-${i}`;
      const input = el('input', {
        id, type: 'text', inputmode: 'decimal', autocomplete: 'off', autocorrect: 'off', autocapitalize: 'off',
        spellcheck: 'false', 'aria-describedby': `${hintId} ${errId}`, 'data-testid': `answer-${q.id}`,
      });
      // The field's accessible name is the question itself (the legend shows it).
      set.append(el('label', { for: id, class: 'visually-hidden', text: `${q.text || q.id}${q.unit ? ` (in ${q.unit})` : ''}` }),
        el('div', { class: 'value-row' }, input, el('span', { class: 'unit', text: q.unit })),
        el('p', { id: hintId, class: 'hint', text: `Allowed: ${questionRange(q)}.` }));
      entry.input = input;
      entry.focus = input;
      if (q.optional) {
        const skip = el('input', { type: 'checkbox', id: `s-${i}`, 'data-testid': `skip-${q.id}` });
        set.append(el('label', { class: 'skip', for: `s-${i}` }, skip, 'Prefer not to say'));
        skip.addEventListener('change', () => {
          input.disabled = skip.checked;
          entry.touched = true;
          validateField(entry, true);
          updateJoin();
        });
        entry.skip = skip;
      }
      input.addEventListener('input', () => {
        updateJoin();
        clearTimeout(checkTimer);
        checkTimer = setTimeout(() => validateField(entry, true), 500);
      });
      input.addEventListener('blur', () => {
        if (input.value.trim() !== '') entry.touched = true;
        if (entry.touched) validateField(entry, true);
      });
    } else {
      const radios = q.options.map((o, k) => el('input', {
        type: 'radio', name: `q-${i}`, id: `a-${i}-${k}`, value: o, 'data-testid': `answer-${q.id}-${o}`,
      }));
      const labels = radios.map((r, k) => el('label', { for: r.id }, r, q.options[k]));
      if (q.optional) {
        const skip = el('input', { type: 'radio', name: `q-${i}`, id: `s-${i}`, value: '', 'data-testid': `skip-${q.id}` });
        labels.push(el('label', { for: skip.id }, skip, 'Prefer not to say'));
        radios.push(skip);
      }
      set.append(el('div', { class: 'choices' }, labels));
      for (const r of radios) {
        r.addEventListener('change', () => {
          entry.touched = true;
          validateField(entry, true);
          updateJoin();
        });
      }
      entry.radios = radios;
      entry.focus = radios[0];
    }
    set.append(error);
    return entry;
  });
  replace(ui.questions, quest.map((e) => e.set));
}

/** A question's answer as core takes it: the text or label, null to skip, undefined if none. */
function answerOf(entry) {
  if (entry.input) {
    if (entry.skip?.checked) return null;
    return entry.input.value.trim() === '' ? undefined : entry.input.value;
  }
  const r = entry.radios.find((x) => x.checked);
  if (!r) return undefined;
  return r.value === '' ? null : r.value;
}

/** Checks one question with core's rules; shows the reason beside it when `say`. */
function validateField(entry, say) {
  const a = answerOf(entry);
  let problem = '';
  if (a === undefined) {
    problem = say && entry.touched ? (entry.q.optional ? 'Answer, or choose “Prefer not to say”.' : 'This question needs an answer.') : '';
  } else {
    problem = checkAnswer(paramsJson, entry.q.id, a) ?? '';
  }
  const ok = a !== undefined && !problem;
  if (say || ok) {
    // Beside its field the question is implicit: drop core's 'question "id": ' prefix.
    entry.error.textContent = problem ? sentence(problem.replace(/^question "[^"]*":? /, '')) : '';
    entry.set.toggleAttribute('data-invalid', !!problem);
    if (entry.input) entry.input.setAttribute('aria-invalid', problem ? 'true' : 'false');
  }
  return ok;
}

/**
 * Clears the marks of answers that became fine. The join button stays enabled for a
 * questionnaire: pressing it checks every answer and says beside each what is missing.
 */
function updateJoin() {
  for (const e of quest) validateField(e, false);
}

/** Every question checked before joining; the first problem gets the focus when `say`. */
function validateQuestions(say) {
  let ok = true;
  for (const e of quest) {
    if (say) e.touched = true;
    if (!validateField(e, say)) {
      if (ok && say) e.focus.focus();
      ok = false;
    }
  }
  let problem = '';
  if (ok && chosen.invite_required && ui.invite.value.trim() === '' && say === true) {
    problem = 'This study needs the invite code the hospital gave you.';
    ok = false;
  }
  ui.formError.textContent = say && !ok ? (problem || 'Please check the answers marked above.') : '';
  return ok;
}

/** The answers as core's JSON form: {id: text | label | null}. */
function answersJson() {
  const out = {};
  for (const e of quest) {
    const a = answerOf(e);
    if (a !== undefined) out[e.q.id] = a;
  }
  return JSON.stringify(out);
}

/** Checks the field with core's rules; shows the reason beside it when `say`. */
function validate(say) {
  if (!chosen) return false;
  if (quest) return validateQuestions(say);
  const text = ui.value.value;
  let problem = text.trim() === '' ? '' : checkValue(paramsJson, text);
  if (problem === undefined && chosen.invite_required && ui.invite.value.trim() === '' && say === true) {
    problem = 'This study needs the invite code the hospital gave you.';
  }
  const ok = text.trim() !== '' && !problem;
  if (say || ok) {
    ui.error.textContent = problem ? sentence(problem) : '';
    ui.value.setAttribute('aria-invalid', problem ? 'true' : 'false');
  }
  if (!session || session.over) ui.join.disabled = !ok;
  return ok;
}

function sentence(s) {
  return s.charAt(0).toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? '' : '.');
}

function lockForm(locked) {
  if (quest) {
    for (const e of quest) {
      if (e.input) e.input.disabled = locked || !!e.skip?.checked;
      if (e.skip) e.skip.disabled = locked;
      for (const r of e.radios ?? []) r.disabled = locked;
    }
  }
  ui.value.disabled = locked;
  ui.invite.disabled = locked;
  ui.join.disabled = locked || (!quest && !validate(false));
}

function setStatus(text, state) {
  ui.status.textContent = text;
  ui.status.dataset.state = state;
}

/**
 * Marks the shown steps up to `step` done and the next one current ("waiting" is itself in
 * progress: only "connected" is done). The "checked" step is shown only with validity proofs.
 */
function setStep(step) {
  const shown = [...ui.steps.children].filter((li) => !li.hidden);
  const order = shown.map((li) => li.dataset.step);
  const last = order.indexOf(step === 'waiting' ? 'connected' : step);
  shown.forEach((li, i) => {
    li.classList.toggle('done', i <= last);
    li.classList.toggle('current', step !== null && i === last + 1);
  });
}

/** Starts a new round: a fresh wasm Patient (fresh keys) and a fresh connection. */
function start() {
  if (session && !session.over) return;
  let patient;
  try {
    const invite = chosen.invite_required ? ui.invite.value.trim() : '';
    patient = quest
      ? Patient.withAnswers(Date.now(), chosen.params.id, answersJson(), paramsJson, invite || undefined)
      : new Patient(Date.now(), chosen.params.id, ui.value.value, paramsJson, invite || undefined);
    // Rounds this tab already took part in: the core refuses a replayed round id or a second
    // partial-sum request in one of them, also across reconnects.
    const seen = sessionStorage.getItem(seenKey(chosen.params.id));
    if (seen) patient.rememberRounds(seen);
  } catch (e) {
    (quest ? ui.formError : ui.error).textContent = sentence(e.message.replace(/^answers rejected: /, ''));
    return;
  }
  if (session) closeSession(session);
  const s = { patient, ws: null, stage: 'connecting', round: null, n: null, timer: 0, over: false };
  session = s;
  lockForm(true);
  show(ui.join, false);
  show(ui.progress, true);
  show(ui.problem, false);
  show(ui.safety, false);
  show(ui.result, false);
  show(ui.leave, true);
  setStep(null);
  setStatus('Connecting to the hospital…', 'connecting');
  ui.progress.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  connect(s);
}

/** How many times a "try again later" (close code 1013) is retried before giving up. */
const RETRY_LIMIT = 30;

function connect(s) {
  let ws;
  try {
    // ?study= lets a load balancer route the socket to the relay that runs the study.
    ws = new WebSocket(`wss://${location.host}/ws?study=${encodeURIComponent(chosen.params.id)}`);
  } catch (e) {
    dropped(s);
    return;
  }
  // The bulk messages (the delivery) arrive as binary frames: hand them to wasm as bytes.
  ws.binaryType = 'arraybuffer';
  s.ws = ws;
  ws.addEventListener('open', () => {
    if (session !== s) return;
    s.stage = 'connected';
    setStep('connected');
    setStatus(`Connected. Joining “${chosen.params.id}”…`, 'connected');
    drain(s);
  });
  ws.addEventListener('message', (ev) => {
    if (session !== s) return;
    try {
      if (typeof ev.data === 'string') s.patient.handle(Date.now(), ev.data);
      else s.patient.handleBinary(Date.now(), new Uint8Array(ev.data));
    } catch (e) {
      // Core's errors never contain the value; the machine has already decided what to do.
      console.warn(`cohort: ${e.name}: ${e.message}`);
    }
    drain(s);
  });
  ws.addEventListener('close', (ev) => {
    if (session !== s) return;
    s.ws = null;
    // 1013 "try again later" before joining: another relay runs the study or is taking it
    // over. Start afresh (new keys) in a moment; nothing but a public key was sent.
    if (!s.over && ev.code === 1013 && (s.stage === 'connecting' || s.stage === 'connected')
        && (s.retries = (s.retries ?? 0) + 1) <= RETRY_LIMIT) {
      setStatus('The hospital is moving this study to another server; trying again…', 'connecting');
      setTimeout(() => {
        if (session !== s || s.over) return;
        s.over = true;
        const retries = s.retries;
        start();
        if (session !== s) session.retries = retries;
      }, 1000);
      return;
    }
    if (!s.over) dropped(s);
  });
}

/** Sends what the machine queued, shows what happened, and arms its timer. */
function seenKey(study) {
  return `cohort-seen-rounds:${study}`;
}

function drain(s) {
  for (let m = s.patient.pollOutput(); m !== undefined; m = s.patient.pollOutput()) {
    if (s.ws && s.ws.readyState === WebSocket.OPEN) s.ws.send(m);
  }
  try {
    sessionStorage.setItem(seenKey(chosen.params.id), s.patient.seenRoundsJson());
  } catch (_) {
    // Storage full or disabled: the core still refuses replays on this connection.
  }
  for (let ev = s.patient.pollEvent(); ev !== undefined; ev = s.patient.pollEvent()) onEvent(s, ev);
  clearTimeout(s.timer);
  const t = s.patient.pollTimeout();
  if (t !== undefined) {
    s.timer = setTimeout(() => {
      s.patient.handleTimeout(Date.now());
      drain(s);
    }, Math.max(0, t - Date.now()));
  }
  if (s.patient.isFinished && !s.over) {
    // Completed, abandoned or refused: nothing more to say on this connection.
    finish(s);
  }
}

function onEvent(s, ev) {
  switch (ev.kind) {
    case 'welcomed':
      s.stage = 'waiting';
      s.round = ev.round;
      setStep('waiting');
      setStatus(`Waiting for patients: ${ev.enrolled} of ${ev.study.size} joined`, 'waiting');
      break;
    case 'enrolment':
      setStatus(`Waiting for patients: ${ev.enrolled} of ${ev.size} joined`, 'waiting');
      break;
    case 'roster_frozen':
      s.stage = 'roster';
      s.round = ev.round;
      s.n = ev.n;
      ui.safetyRound.textContent = ev.round;
      ui.safetyCode.textContent = ev.safetyCode;
      show(ui.safety, true);
      setStatus(`Round ${ev.round} started with ${patients(ev.n)}. Sealing your shares…`, 'roster');
      break;
    case 'shares_sent':
      s.stage = 'shares';
      setStep('shares');
      setStatus(`Shares sent, each sealed for one of the other ${patients(s.n - 1)}. Waiting for theirs…`, 'shares');
      break;
    case 'proofs_checked':
      setStep('checked');
      if (ev.excluded.length) {
        setStatus(`Proofs checked: ${patients(ev.excluded.length)} left out (see the result). Adding up…`, 'shares');
      } else {
        setStatus('Every answer was proven valid, checked by the other patients. Adding up…', 'shares');
      }
      break;
    case 'partial_sum_sent':
      s.stage = 'partial';
      setStep('partial');
      setStatus(`Partial sum sent (the sum of ${ev.contributors} sealed shares). Waiting for the result…`, 'partial');
      break;
    case 'completed':
      s.stage = 'result';
      setStep('result');
      setStatus(`Result ready: ${patients(ev.count)} took part in round ${ev.round}.`, 'result');
      showResult(ev);
      break;
    case 'abandoned':
      problem(s, `Round ${ev.round} was stopped. Nothing was revealed.`, `Why: ${ev.message}.`, 'Join the next round');
      break;
    case 'relay_error':
      if (s.patient.isFinished) problem(s, 'The hospital turned this down.', sentence(ev.message), 'Try again');
      else console.warn(`cohort: relay error ${ev.code}: ${ev.message}`);
      break;
    case 'refused':
      problem(s, 'This page stopped taking part. Nothing about your value was revealed.', `Why: ${sentence(ev.message)}`, 'Rejoin');
      break;
    default:
      break;
  }
}

function problem(s, summary, text, button) {
  s.stage = 'problem';
  ui.problemText.textContent = text;
  ui.rejoin.textContent = button;
  show(ui.problem, true);
  for (const li of ui.steps.children) li.classList.remove('current');
  setStatus(summary, 'problem');
}

function dropped(s) {
  const [summary, detail] = {
    connecting: ['Could not reach the hospital.', 'Nothing was sent. Check your connection, then rejoin.'],
    connected: ['The connection to the hospital closed before you joined.', 'Nothing was sent. You can rejoin.'],
    waiting: ['The connection to the hospital was lost while waiting for other patients.',
      'Only your public key had been sent, never your value. Rejoin to take your place again.'],
  }[s.stage] ?? [`The connection to the hospital was lost during round ${s.round}.`,
    'Only sealed shares had left this tab, and they reveal nothing on their own. The round may finish without you or be stopped; rejoin to take part in the next round.'];
  s.patient.leave();
  s.over = true;
  problem(s, summary, detail, 'Rejoin');
  lockForm(false);
  show(ui.leave, false);
}

function finish(s) {
  s.over = true;
  clearTimeout(s.timer);
  const ws = s.ws;
  s.ws = null;
  if (ws) ws.close(1000, 'done');
  lockForm(false);
  show(ui.leave, false);
}

function closeSession(s) {
  s.over = true;
  clearTimeout(s.timer);
  if (s.ws) s.ws.close(1000, 'done');
  s.ws = null;
}

function leave() {
  const s = session;
  if (!s || s.over) return;
  s.patient.leave();
  drain(s);
  closeSession(s);
  lockForm(false);
  show(ui.leave, false);
  show(ui.join, true);
  setStep(null);
  show(ui.safety, false);
  setStatus('You left the study. Nothing about your value was revealed.', 'left');
}

function showResult(ev) {
  if (quest) {
    showQuestionnaireResult(ev);
    return;
  }
  const p = chosen.params;
  const d = p.decimals;
  const unit = p.unit ? ` ${p.unit}` : '';
  const r = ui.result;
  r.dataset.count = plain(ev.count);
  r.dataset.sum = plain(ev.sum);
  r.dataset.mean = plain(ev.mean);
  r.dataset.stddev = plain(ev.stddev);
  r.dataset.round = plain(ev.round);
  r.dataset.safetyCode = ev.safetyCode;
  ui.resultTitle.textContent = `Result of round ${ev.round}`;
  // The core shows a result only after recomputing it here from every partial sum over the
  // contributor set this device was given.
  let mark = document.getElementById('r-checked');
  if (!mark) {
    mark = el('p', { id: 'r-checked', class: 'checked', text: '' });
    mark.dataset.testid = 'result-checked';
    ui.resultTitle.after(mark);
  }
  mark.textContent = ev.checkedOnDevice ? '✓ checked on this device' : 'not checked on this device';
  r.dataset.checkedOnDevice = ev.checkedOnDevice ? 'true' : 'false';
  showExcluded(mark, ev.excluded);
  $('r-count').textContent = ev.count;
  const withUnit = (n, digits) => [human(n, digits), p.unit ? el('span', { class: 'u', text: p.unit }) : null];
  replace($('r-mean'), withUnit(ev.mean, d + 2));
  replace($('r-stddev'), withUnit(ev.stddev, d + 2));
  replace($('r-sum'), withUnit(ev.sum, d));
  if (ui.safetyCode.textContent !== ev.safetyCode) {
    ui.safetyCode.textContent = ev.safetyCode;
    show(ui.safety, true);
  }
  const edges = Array.from(bucketEdges(paramsJson));
  show(r, true);
  const k = smallCellLimit(p);
  histogram($('r-chart'), { counts: ev.histogram, edges, unit: p.unit, decimals: d, suppressBelow: k });
  const width = human(edges[1] - edges[0], d + 1);
  const small = k > 0 ? ` “< ${k}” stands for 1 to ${k - 1} values: counts that small are not shown.` : '';
  $('r-caption').textContent = `Each bar counts the values in one ${width}${unit} range. Only the counts are known: each value stays with its owner.${small}`;
}

/** The members left out by their validity proofs, right after the "checked" mark. */
function showExcluded(after, excluded) {
  document.getElementById('r-excluded')?.remove();
  const note = exclusionNote(excluded);
  if (note) {
    note.id = 'r-excluded';
    after.after(note);
  }
}

function showQuestionnaireResult(ev) {
  const p = chosen.params;
  const r = ui.result;
  r.dataset.count = plain(ev.count);
  r.dataset.round = plain(ev.round);
  r.dataset.safetyCode = ev.safetyCode;
  r.dataset.checkedOnDevice = ev.checkedOnDevice ? 'true' : 'false';
  ui.resultTitle.textContent = `Result of round ${ev.round}: ${patients(ev.count)}`;
  let mark = document.getElementById('r-checked');
  if (!mark) {
    mark = el('p', { id: 'r-checked', class: 'checked', text: '' });
    mark.dataset.testid = 'result-checked';
    ui.resultTitle.after(mark);
  }
  mark.textContent = ev.checkedOnDevice ? '✓ checked on this device' : 'not checked on this device';
  showExcluded(mark, ev.excluded);
  if (ui.safetyCode.textContent !== ev.safetyCode) {
    ui.safetyCode.textContent = ev.safetyCode;
    show(ui.safety, true);
  }
  const { view, draw } = questionnaireView(p, ev, (id) => Array.from(bucketEdges(paramsJson, id)));
  replace(ui.qResult, view);
  show(ui.singleResult, false);
  show(ui.qResult, true);
  show(r, true);
  draw();
}
