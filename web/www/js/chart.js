// Charts as SVG, built with DOM APIs (histogram, option counts, fitted line of a pair). Redrawn
// at the container's width so text stays crisp. A count below `suppressBelow` (the study's
// minimum cohort, when small cells are suppressed) is never drawn at its height: it shows as a
// dashed band up to k − 1 labelled "< k".

import { bucketLabel, human, patients } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

/** Whether count `c` is a small cell: 1 to k − 1 answers, withheld when suppression is on. */
export function isSmall(c, k) {
  return k > 0 && c > 0 && c < k;
}

function draw(container, { counts, edges, unit, decimals, suppressBelow = 0 }) {
  const width = Math.max(260, Math.min(760, container.clientWidth || 480));
  const height = Math.round(Math.min(260, Math.max(180, width * 0.45)));
  const m = { top: 22, right: 10, bottom: 42, left: 34 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const n = counts.length;
  const k = suppressBelow;
  const shown = counts.map((c) => (isSmall(c, k) ? k - 1 : c));
  const max = Math.max(1, ...shown);
  const total = counts.reduce((a, b) => a + b, 0);
  const u = unit ? ` ${unit}` : '';

  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    class: 'histogram',
    role: 'img',
    'aria-label': `Histogram of ${patients(total)} in ${n} ranges from ${human(edges[0], decimals)} to ${human(edges[n], decimals)}${u}`,
  });

  // Gridlines and y labels: 0, max and a middle line when it is a whole number.
  const ticks = [0, max];
  if (max >= 2 && max % 2 === 0) ticks.splice(1, 0, max / 2);
  for (const t of ticks) {
    const y = m.top + ph - (t / max) * ph;
    root.append(svg('line', { x1: m.left, x2: m.left + pw, y1: y, y2: y, class: t === 0 ? 'axis' : 'grid' }));
    root.append(svg('text', { x: m.left - 6, y: y + 4, class: 'tick', 'text-anchor': 'end' }, t));
  }

  const bw = pw / n;
  const gap = bw > 8 ? Math.min(4, bw * 0.12) : 0;
  counts.forEach((c, i) => {
    const small = isSmall(c, k);
    const h = (shown[i] / max) * ph;
    const x = m.left + i * bw + gap / 2;
    const y = m.top + ph - h;
    const bar = svg('rect', {
      x, y, width: Math.max(1, bw - gap), height: Math.max(0, h), rx: Math.min(3, bw / 4),
      class: small ? 'bar small' : c > 0 ? 'bar' : 'bar empty',
    });
    const label = small ? `fewer than ${k} patients` : patients(c);
    bar.append(svg('title', {}, `${bucketLabel(edges[i], edges[i + 1], decimals)}${u}: ${label}`));
    root.append(bar);
    if (c > 0 && bw >= 14) {
      root.append(svg('text', { x: x + (bw - gap) / 2, y: y - 5, class: 'count', 'text-anchor': 'middle' }, small ? `<${k}` : c));
    }
  });

  // x labels at bucket edges, thinned out to fit.
  const approx = 8 * (String(human(edges[n], decimals)).length + 2);
  const step = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(pw / approx))));
  for (let i = 0; i <= n; i += step) {
    const x = m.left + i * bw;
    root.append(svg('line', { x1: x, x2: x, y1: m.top + ph, y2: m.top + ph + 4, class: 'axis' }));
    const anchor = i === n ? 'end' : 'middle';
    root.append(svg('text', { x: i === n ? x + 4 : x, y: m.top + ph + 17, class: 'tick', 'text-anchor': anchor }, human(edges[i], decimals)));
  }
  if (unit) {
    root.append(svg('text', { x: m.left + pw / 2, y: height - 6, class: 'unit', 'text-anchor': 'middle' }, unit));
  }
  container.replaceChildren(root);
}

/** Horizontal bars: one per option of a choice question. */
function drawBars(container, { labels, counts, suppressBelow = 0 }) {
  const k = suppressBelow;
  const width = Math.max(240, Math.min(760, container.clientWidth || 480));
  const row = 30;
  const longest = Math.max(...labels.map((l) => l.length));
  const labelW = Math.min(width * 0.42, 12 + 7.2 * longest);
  const m = { top: 6, right: 44, bottom: 6, left: labelW };
  const pw = width - m.left - m.right;
  const height = m.top + m.bottom + row * labels.length;
  const shown = counts.map((c) => (isSmall(c, k) ? k - 1 : c));
  const max = Math.max(1, ...shown);
  const total = counts.reduce((a, b) => a + b, 0);
  const root = svg('svg', {
    viewBox: `0 0 ${width} ${height}`, width, height, class: 'histogram bars', role: 'img',
    'aria-label': `Answers per option, ${patients(total)}`,
  });
  labels.forEach((label, i) => {
    const c = counts[i];
    const small = isSmall(c, k);
    const y = m.top + i * row;
    const w = (shown[i] / max) * pw;
    root.append(svg('text', { x: m.left - 8, y: y + row / 2 + 4, class: 'tick label', 'text-anchor': 'end' },
      label.length > 40 ? `${label.slice(0, 39)}…` : label));
    const bar = svg('rect', {
      x: m.left, y: y + 5, width: Math.max(c > 0 ? 2 : 0, w), height: row - 10, rx: 3,
      class: small ? 'bar small' : 'bar',
    });
    bar.append(svg('title', {}, `${label}: ${small ? `fewer than ${k} patients` : patients(c)}`));
    root.append(bar);
    root.append(svg('text', { x: m.left + w + 6, y: y + row / 2 + 4, class: 'count' }, small ? `<${k}` : c));
  });
  root.append(svg('line', { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom, class: 'axis' }));
  container.replaceChildren(root);
}

/**
 * The least-squares line of a pair over the axes' ranges: x from the x question's min to max,
 * the line clipped to the y question's [min, max]. There are no points to draw: only the line
 * is known. `x`/`y`: {min, max, unit, label, decimals}.
 */
function drawLine(container, { x, y, slope, intercept, testid }) {
  const width = Math.max(240, Math.min(420, container.clientWidth || 360));
  const height = Math.round(width * 0.7);
  const m = { top: 14, right: 14, bottom: 44, left: 50 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const sx = (v) => m.left + ((v - x.min) / (x.max - x.min)) * pw;
  const sy = (v) => m.top + ph - ((v - y.min) / (y.max - y.min)) * ph;
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, class: 'histogram pair', role: 'img' });
  root.append(svg('rect', { x: m.left, y: m.top, width: pw, height: ph, class: 'frame' }));
  for (const [v, anchor] of [[x.min, 'start'], [x.max, 'end']]) {
    root.append(svg('text', { x: sx(v), y: m.top + ph + 15, class: 'tick', 'text-anchor': anchor }, human(v, x.decimals)));
  }
  for (const v of [y.min, y.max]) {
    root.append(svg('text', { x: m.left - 6, y: sy(v) + 4, class: 'tick', 'text-anchor': 'end' }, human(v, y.decimals)));
  }
  root.append(svg('text', { x: m.left + pw / 2, y: height - 6, class: 'unit', 'text-anchor': 'middle' }, axisName(x)));
  const yl = svg('text', { x: 0, y: 0, class: 'unit', 'text-anchor': 'middle', transform: `translate(12 ${m.top + ph / 2}) rotate(-90)` }, axisName(y));
  root.append(yl);
  const seg = clip(slope, intercept, x, y);
  let label;
  if (seg) {
    const line = svg('line', { x1: sx(seg[0]), y1: sy(seg[1]), x2: sx(seg[2]), y2: sy(seg[3]), class: 'fit' });
    if (testid) line.dataset.testid = testid;
    Object.assign(line.dataset, { x1: seg[0], y1: seg[1], x2: seg[2], y2: seg[3] });
    root.append(line);
    label = `Fitted line ${axisName(y)} = ${human(slope, 4)} × ${axisName(x)} ${intercept < 0 ? '−' : '+'} ${human(Math.abs(intercept), 3)}, drawn from ${human(seg[0], x.decimals + 1)} to ${human(seg[2], x.decimals + 1)}`;
  } else {
    label = 'The fitted line does not cross the range of the axes';
  }
  root.setAttribute('aria-label', label);
  container.replaceChildren(root);
}

function axisName(a) {
  return a.unit ? `${a.label} (${a.unit})` : a.label;
}

/**
 * The part of y = slope·x + intercept inside [x.min, x.max] × [y.min, y.max], as
 * [x1, y1, x2, y2], or null when the line misses the box.
 */
export function clip(slope, intercept, x, y) {
  if (!Number.isFinite(slope) || !Number.isFinite(intercept)) return null;
  let lo = x.min;
  let hi = x.max;
  if (slope !== 0) {
    const a = (y.min - intercept) / slope;
    const b = (y.max - intercept) / slope;
    lo = Math.max(lo, Math.min(a, b));
    hi = Math.min(hi, Math.max(a, b));
  } else if (intercept < y.min || intercept > y.max) {
    return null;
  }
  if (!(lo <= hi)) return null;
  const at = (v) => Math.min(y.max, Math.max(y.min, slope * v + intercept));
  return [lo, at(lo), hi, at(hi)];
}

const observed = new WeakMap();

/** Draws with `fn` into `container`, and redraws when the container is resized. */
function observe(container, fn, data) {
  const first = !observed.has(container);
  observed.set(container, { fn, data, width: 0 });
  fn(container, data);
  if (first && 'ResizeObserver' in window) {
    new ResizeObserver(() => {
      const s = observed.get(container);
      const w = container.clientWidth;
      if (s && Math.abs(w - s.width) > 4) {
        s.width = w;
        s.fn(container, s.data);
      }
    }).observe(container);
  }
}

/**
 * Draws a histogram of `counts` (one per bucket) with `edges` (buckets + 1 numbers) into
 * `container`, and redraws it when the container is resized. `suppressBelow`: k, or 0.
 */
export function histogram(container, data) {
  observe(container, draw, data);
}

/** Horizontal bars of `counts` per option (`labels`); `suppressBelow`: k, or 0. */
export function optionBars(container, data) {
  observe(container, drawBars, data);
}

/** The fitted line of a pair of number questions over their ranges (see `drawLine`). */
export function pairLine(container, data) {
  observe(container, drawLine, data);
}
