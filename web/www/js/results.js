// A questionnaire's result for people: per-question tiles and charts, the correlation table,
// the fitted line of every pair of number questions, and the means per option. Shared by the
// patient page (the `completed` event) and the dashboard (the relay's round rows): both carry
// core's ResultSummary shape (`questions`, `pairs`, `byOption` or `by_option`).
//
// Small cells: unless the study sets `suppress_small_cells: false`, a count of 1 to k − 1
// (k = the study's `min_cohort`) is shown as "< k", and what such a small group's answers
// would give away (its mean, a pair's line) is withheld.

import { histogram, isSmall, optionBars, pairLine } from './chart.js';
import { el } from './dom.js';
import { human, plain } from './format.js';

/** The suppression threshold of a study: its minimum cohort, or 0 when suppression is off. */
export function smallCellLimit(params) {
  return params.suppress_small_cells === false ? 0 : params.min_cohort;
}

/** One sentence on the study's validity proofs (on unless the study says `proofs: false`). */
export function proofsText(params) {
  return params.proofs === false
    ? 'Validity proofs are off for this study: the other patients do not check that answers are in range.'
    : 'Every patient proves its answers are valid (in range, one bucket, one option) and the other patients check that proof without seeing them; an invalid contribution is left out.';
}

const REASONS = {
  invalid_proof: 'its validity proof failed',
  not_verified: 'its validity proof could not be checked',
};

/**
 * The members a round left out because of their validity proofs (`excluded`: [{index,
 * reason}] from the result), as a paragraph with `data-testid="excluded"`, or null if none.
 */
export function exclusionNote(excluded) {
  if (!Array.isArray(excluded) || excluded.length === 0) return null;
  const parts = excluded.map((e) => `patient #${e.index} (${REASONS[e.reason] ?? e.reason})`);
  const p = el('p', { class: 'excluded', 'data-testid': 'excluded', text: `Left out of this result: ${parts.join(', ')}.` });
  p.dataset.excluded = excluded.map((e) => `${e.index}:${e.reason}`).join(',');
  return p;
}

/** Whether a study is a questionnaire (has `questions`) rather than one number. */
export function isQuestionnaire(params) {
  return Array.isArray(params.questions) && params.questions.length > 0;
}

/** A short line about a questionnaire study: "3 questions: 2 numbers, 1 choice". */
export function questionsText(params) {
  const qs = params.questions;
  const numbers = qs.filter((q) => q.kind === 'number').length;
  const parts = [];
  if (numbers) parts.push(`${numbers} number${numbers === 1 ? '' : 's'}`);
  if (qs.length - numbers) parts.push(`${qs.length - numbers} choice${qs.length - numbers === 1 ? '' : 's'}`);
  return `${qs.length} question${qs.length === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

/** "100 to 230 cm, up to 1 decimal" for a number question. */
export function questionRange(q) {
  const unit = q.unit ? ` ${q.unit}` : '';
  const d = q.decimals;
  return `${q.min} to ${q.max}${unit}, ${d === 0 ? 'whole numbers' : `up to ${d} decimal${d === 1 ? '' : 's'}`}`;
}

function equalEdges(q) {
  const out = [];
  for (let i = 0; i <= q.buckets; i++) out.push(Number(q.min) + ((Number(q.max) - Number(q.min)) * i) / q.buckets);
  return out;
}

function count(n, k) {
  return isSmall(n, k) ? `< ${k}` : String(n);
}

function num(v, digits) {
  return v === null || v === undefined ? '–' : human(v, digits);
}

/**
 * The result view of a questionnaire study. `params`: the study's StudyParams; `result`:
 * {questions, pairs, byOption | by_option}; `edges(id)`: a number question's bucket edges
 * (from the wasm module's `bucketEdges`; equal-width edges computed here when absent).
 */
export function questionnaireView(params, result, edges) {
  const k = smallCellLimit(params);
  const byId = new Map(params.questions.map((q) => [q.id, q]));
  const unitOf = (id) => byId.get(id)?.unit || '';
  const decimalsOf = (id) => byId.get(id)?.decimals ?? 2;
  const edgesOf = (q) => {
    try {
      return edges ? edges(q.id) : equalEdges(q);
    } catch {
      return equalEdges(q);
    }
  };
  const draws = [];

  const caption = k > 0
    ? el('p', { class: 'small-cells', 'data-testid': 'small-cells' },
      `“< ${k}” stands for 1 to ${k - 1} answers: counts that small are not shown, and neither are the means or lines they would give away, so that no small group of patients can be picked out (the study's minimum group is ${k}).`)
    : el('p', { class: 'small-cells', 'data-testid': 'small-cells' },
      'This study shows every count, however small (small-cell suppression is off).');

  const tiles = params.questions.map((q) => {
    const s = result.questions?.[q.id];
    if (!s) return null;
    const tile = el('section', { class: 'q-tile', 'data-testid': `q-${q.id}`, dataset: { question: q.id } });
    const small = isSmall(s.count, k);
    tile.dataset.count = small ? '' : plain(s.count);
    if (small) tile.dataset.suppressed = 'true';
    const head = el('h3', { text: q.text || q.id });
    if (q.kind === 'number') {
      const d = q.decimals;
      const u = (v, digits) => [num(v, digits), q.unit && v !== null && v !== undefined ? el('span', { class: 'u', text: q.unit }) : null];
      if (!small) {
        Object.assign(tile.dataset, { sum: plain(s.sum), mean: s.mean === null ? '' : plain(s.mean), stddev: s.stddev === null ? '' : plain(s.stddev) });
      }
      const chart = el('div', { class: 'chart-box' });
      const e = edgesOf(q);
      draws.push(() => histogram(chart, { counts: s.histogram, edges: e, unit: q.unit, decimals: d, suppressBelow: k }));
      tile.append(head,
        el('dl', { class: 'stats' },
          el('div', {}, el('dt', { text: 'Answered' }), el('dd', { text: count(s.count, k) })),
          el('div', {}, el('dt', { text: 'Mean' }), el('dd', {}, small ? '–' : u(s.mean, d + 2))),
          el('div', {}, el('dt', { text: 'Std. deviation' }), el('dd', {}, small ? '–' : u(s.stddev, d + 2)))),
        el('figure', { class: 'chart' }, chart,
          el('figcaption', { text: `Answers per ${human(e[1] - e[0], d + 1)}${q.unit ? ` ${q.unit}` : ''} range.` })));
    } else {
      const labels = q.options;
      const counts = labels.map((o) => s.counts?.[o] ?? 0);
      const chart = el('div', { class: 'chart-box bars-box' });
      draws.push(() => optionBars(chart, { labels, counts, suppressBelow: k }));
      tile.append(head,
        el('dl', { class: 'stats' }, el('div', {}, el('dt', { text: 'Answered' }), el('dd', { text: count(s.count, k) }))),
        el('figure', { class: 'chart' }, chart),
        el('div', { class: 'table-wrap' }, el('table', {},
          el('thead', {}, el('tr', {}, el('th', { text: 'Option' }), el('th', { class: 'num', text: 'Patients' }))),
          el('tbody', {}, labels.map((o, i) => {
            const tr = el('tr', { 'data-testid': `q-${q.id}-${o}` },
              el('td', { text: o }), el('td', { class: 'num', text: count(counts[i], k) }));
            if (isSmall(counts[i], k)) tr.dataset.suppressed = 'true';
            else tr.dataset.count = plain(counts[i]);
            return tr;
          })))));
    }
    if (q.optional) tile.append(el('p', { class: 'muted', text: 'Optional: patients could prefer not to say.' }));
    return tile;
  }).filter(Boolean);

  const view = el('div', { class: 'q-results' }, caption, el('div', { class: 'q-grid' }, tiles));

  const pairs = result.pairs ?? [];
  if (pairs.length) {
    const rows = pairs.map((p) => {
      const small = isSmall(p.n, k);
      const tr = el('tr', { 'data-testid': `pair-${p.x}-${p.y}` },
        el('td', { text: `${p.x} × ${p.y}` }),
        el('td', { class: 'num', text: count(p.n, k) }),
        el('td', { class: 'num', text: small ? '–' : num(p.r, 3) }),
        el('td', { class: 'num', text: small ? '–' : num(p.slope, 4) }),
        el('td', { class: 'num', text: small ? '–' : num(p.intercept, 3) }));
      if (small) tr.dataset.suppressed = 'true';
      else {
        Object.assign(tr.dataset, {
          n: plain(p.n), r: p.r == null ? '' : plain(p.r), slope: p.slope == null ? '' : plain(p.slope),
          intercept: p.intercept == null ? '' : plain(p.intercept),
        });
      }
      return tr;
    });
    view.append(el('section', {},
      el('h3', { text: 'Correlations' }),
      el('p', { class: 'muted', text: 'Per pair of number questions, over the patients who answered both: Pearson’s r and the least-squares line y = slope × x + intercept.' }),
      el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'pairs' },
        el('thead', {}, el('tr', {}, el('th', { text: 'x × y' }), el('th', { class: 'num', text: 'n' }),
          el('th', { class: 'num', text: 'r' }), el('th', { class: 'num', text: 'Slope' }), el('th', { class: 'num', text: 'Intercept' }))),
        el('tbody', {}, rows)))));

    const charts = pairs.filter((p) => !isSmall(p.n, k) && p.slope != null && p.intercept != null).map((p) => {
      const box = el('div', { class: 'chart-box' });
      const qx = byId.get(p.x);
      const qy = byId.get(p.y);
      const axis = (q) => ({ min: Number(q.min), max: Number(q.max), unit: q.unit, label: q.id, decimals: q.decimals });
      draws.push(() => pairLine(box, { x: axis(qx), y: axis(qy), slope: p.slope, intercept: p.intercept, testid: `line-${p.x}-${p.y}` }));
      return el('figure', { class: 'chart', 'data-testid': `pair-chart-${p.x}-${p.y}` }, box,
        el('figcaption', { text: `${p.y} ≈ ${human(p.slope, 4)} × ${p.x} ${p.intercept < 0 ? '−' : '+'} ${human(Math.abs(p.intercept), 3)} (n = ${p.n}, r = ${num(p.r, 3)}). Only the line is known: no patient’s point is.` }));
    });
    if (charts.length) view.append(el('section', {}, el('h3', { text: 'Fitted lines' }), el('div', { class: 'pair-charts' }, charts)));
  }

  const byOption = result.byOption ?? result.by_option ?? [];
  if (byOption.length) {
    view.append(el('section', {},
      el('h3', { text: 'Means per option' }),
      el('div', { class: 'table-wrap' }, el('table', { 'data-testid': 'by-option' },
        el('thead', {}, el('tr', {}, el('th', { text: 'Choice' }), el('th', { text: 'Option' }), el('th', { text: 'Number' }),
          el('th', { class: 'num', text: 'n' }), el('th', { class: 'num', text: 'Mean' }))),
        el('tbody', {}, byOption.map((b) => {
          const small = isSmall(b.n, k);
          const tr = el('tr', { 'data-testid': `by-${b.choice}-${b.number}-${b.option}` },
            el('td', { text: b.choice }), el('td', { text: b.option }), el('td', { text: b.number }),
            el('td', { class: 'num', text: count(b.n, k) }),
            el('td', { class: 'num', text: small ? '–' : `${num(b.mean, decimalsOf(b.number) + 2)}${b.mean == null || !unitOf(b.number) ? '' : ` ${unitOf(b.number)}`}` }));
          if (small) tr.dataset.suppressed = 'true';
          else Object.assign(tr.dataset, { n: plain(b.n), mean: b.mean == null ? '' : plain(b.mean) });
          return tr;
        }))))));
  }
  return { view, draw: () => draws.forEach((f) => f()) };
}
