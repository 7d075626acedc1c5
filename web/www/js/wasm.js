// Loads the wasm module with the integrity the page names for it. The page carries
// <script type="application/wasm" id="wasm-module" src=… data-integrity=…>, a data block the
// browser does not fetch or run by itself; fetch(…, { integrity }) makes the browser refuse a
// module whose bytes differ from what the page was served with.
import init from '../pkg/cohort_web.js';

export async function loadWasm() {
  const el = document.getElementById('wasm-module');
  if (!el) return init();
  const url = new URL(el.getAttribute('src'), document.baseURI);
  const opts = { credentials: 'same-origin' };
  if (el.dataset.integrity) opts.integrity = el.dataset.integrity;
  return init({ module_or_path: fetch(url, opts) });
}
