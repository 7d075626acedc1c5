// Histogram as SVG, built with DOM APIs. Redrawn at the container's width so text stays crisp.

import { bucketLabel, human, patients } from './format.js';

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function draw(container, { counts, edges, unit, decimals }) {
  const width = Math.max(260, Math.min(760, container.clientWidth || 480));
  const height = Math.round(Math.min(260, Math.max(180, width * 0.45)));
  const m = { top: 22, right: 10, bottom: 42, left: 34 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const n = counts.length;
  const max = Math.max(1, ...counts);
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
    const h = (c / max) * ph;
    const x = m.left + i * bw + gap / 2;
    const y = m.top + ph - h;
    const bar = svg('rect', {
      x, y, width: Math.max(1, bw - gap), height: Math.max(0, h), rx: Math.min(3, bw / 4),
      class: c > 0 ? 'bar' : 'bar empty',
    });
    bar.append(svg('title', {}, `${bucketLabel(edges[i], edges[i + 1], decimals)}${u}: ${patients(c)}`));
    root.append(bar);
    if (c > 0 && bw >= 14) {
      root.append(svg('text', { x: x + (bw - gap) / 2, y: y - 5, class: 'count', 'text-anchor': 'middle' }, c));
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

const observed = new WeakMap();

/**
 * Draws a histogram of `counts` (one per bucket) with `edges` (buckets + 1 numbers) into
 * `container`, and redraws it when the container is resized.
 */
export function histogram(container, data) {
  const first = !observed.has(container);
  observed.set(container, { data, width: 0 });
  draw(container, data);
  if (first && 'ResizeObserver' in window) {
    new ResizeObserver(() => {
      const s = observed.get(container);
      const w = container.clientWidth;
      if (s && Math.abs(w - s.width) > 4) {
        s.width = w;
        draw(container, s.data);
      }
    }).observe(container);
  }
}
