// Loads the wasm module with the integrity the page names for it (<link id="wasm-module">),
// so a module whose bytes differ from what the page was served with is refused by the browser.
import init from '../pkg/cohort_web.js';

export async function loadWasm() {
  const link = document.getElementById('wasm-module');
  if (!link) return init();
  const opts = { credentials: 'same-origin', mode: 'cors' };
  if (link.integrity) opts.integrity = link.integrity;
  return init({ module_or_path: fetch(link.href, opts) });
}
