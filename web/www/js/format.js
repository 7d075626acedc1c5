// Number formatting for people (locale-aware) and for machines (plain decimals).

/** A number for display with at most `digits` fraction digits, in the browser's locale. */
export function human(n, digits) {
  if (!Number.isFinite(n)) return '–';
  return new Intl.NumberFormat(undefined, {
    maximumFractionDigits: Math.max(0, Math.min(20, digits)),
  }).format(n);
}

/** A number as a plain decimal string (no exponent, no grouping): for data-* attributes. */
export function plain(n) {
  if (!Number.isFinite(n)) return '';
  let s = String(n);
  if (/e/i.test(s)) s = n.toFixed(12).replace(/\.?0+$/, '');
  return s;
}

/** "0 to 300 cm, up to 1 decimal" */
export function rangeText(params) {
  const unit = params.unit ? ` ${params.unit}` : '';
  const d = params.decimals;
  const digits = d === 0 ? 'whole numbers' : `up to ${d} decimal${d === 1 ? '' : 's'}`;
  return `${params.min} to ${params.max}${unit}, ${digits}`;
}

/** "150–180" for a bucket. */
export function bucketLabel(lo, hi, decimals) {
  return `${human(lo, decimals + 1)}–${human(hi, decimals + 1)}`;
}

/** "1 patient" / "3 patients" */
export function patients(n) {
  return `${n} patient${n === 1 ? '' : 's'}`;
}
