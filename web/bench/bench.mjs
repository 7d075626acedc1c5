// Times one patient's whole round in wasm (the release bundle built with the `bench` feature in ./pkg), replaying a
// fixture made natively by `cohort-bench --wasm-fixtures` (a round of n patients simulated
// with core's Patient and Hospital). The patient is re-created from the fixture's seed with
// benchPatient(), so it is the fixture's own patient: every frame it sends must equal the
// fixture's byte for byte, which is checked on every repetition.
//
// window.runBench(n, reps, warmup, proofs) -> summary object (milliseconds), used by run.mjs:
// replays round-<n>.json (validity proofs on) or round-<n>-noproofs.json.
// window.runProve(label, studyJson, reps, warmup) -> summary of core's proof generation alone
// (BenchProof: witness + proof of one fixed valid vector).

import init, { benchPatient, BenchAgreement, BenchProof } from './pkg/cohort_web.js';

const statusEl = document.getElementById('status');
const outEl = document.getElementById('out');

function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (q) => s[Math.min(s.length, Math.max(1, Math.ceil(q * s.length))) - 1];
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return {
    p50: r3(rank(0.5)), p90: r3(rank(0.9)), p99: r3(rank(0.99)),
    min: r3(s[0]), max: r3(s[s.length - 1]),
    mean: r3(s.reduce((a, b) => a + b, 0) / s.length),
  };
}

// Frames as in the fixture: {text} for a text message, {hex} for a binary one.
const hexOf = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const bytesOf = (h) => new Uint8Array(h.match(/../g).map((x) => parseInt(x, 16)));
const sameFrame = (m, f) => (typeof m === 'string' ? m === f.text : hexOf(m) === f.hex);

function drainOutputs(p, sent) {
  for (let m; (m = p.pollOutput()) !== undefined;) sent.push(m);
}

function drainEvents(p, events) {
  for (let e; (e = p.pollEvent()) !== undefined;) events.push(e);
}

// One repetition: the patient's whole round, each step timed. Returns {times, sent, events}.
function oneRound(fx, paramsJson) {
  const sent = [];
  const events = [];
  const times = {};
  const t0 = performance.now();
  const p = benchPatient(Date.now(), fx.study, fx.value, paramsJson, fx.seed);
  drainOutputs(p, sent);
  drainEvents(p, events);
  let t = performance.now();
  times.start = t - t0;
  for (const frame of fx.from_relay) {
    const a = performance.now();
    if (frame.text !== undefined) p.handle(Date.now(), frame.text);
    else p.handleBinary(Date.now(), frame.bytes);
    drainOutputs(p, sent);
    drainEvents(p, events);
    t = performance.now();
    times[frame.kind] = (times[frame.kind] ?? 0) + (t - a);
  }
  times.total = t - t0;
  p.free();
  return { times, sent, events };
}

window.runBench = async (n, reps, warmup, proofs = true) => {
  const file = proofs ? `round-${n}.json` : `round-${n}-noproofs.json`;
  const res = await fetch(`/fixtures/${file}`);
  if (!res.ok) throw new Error(`fixture ${file}: HTTP ${res.status}`);
  const fx = await res.json();
  // Binary frames decoded from hex once, outside the timed calls.
  for (const f of fx.from_relay) if (f.hex !== undefined) f.bytes = bytesOf(f.hex);
  const paramsJson = JSON.stringify(fx.params);
  if ((fx.proofs !== false) !== proofs) throw new Error(`${file}: proofs ${fx.proofs}`);
  const steps = {};
  const agree = [];
  const rest = [];
  // After the delivery: opening it and answering (verify with proofs, else the partial sum),
  // the checker's decision (checks → verdict) and the verdicts (→ partial sum).
  const afterDelivery = [];
  for (let r = 0; r < warmup + reps; r++) {
    const { times, sent, events } = oneRound(fx, paramsJson);
    // Correctness, outside the timed calls: the same frames as the native patient of the
    // fixture, and the round completed.
    if (sent.length !== fx.to_relay.length || sent.some((m, i) => !sameFrame(m, fx.to_relay[i]))) {
      throw new Error(`repetition ${r}: the wasm patient's frames differ from the fixture's`);
    }
    const done = events.find((e) => e.kind === 'completed');
    if (!done) throw new Error(`repetition ${r}: no completed event (${events.map((e) => e.kind)})`);
    // Key agreement alone: n - 1 agreements (X25519 + HKDF-extract), fresh peers each time.
    const ka = new BenchAgreement(n - 1, r + 1);
    const a0 = performance.now();
    const ok = ka.run();
    const a1 = performance.now();
    ka.free();
    if (ok !== n - 1) throw new Error(`only ${ok} of ${n - 1} agreements succeeded`);
    if (r < warmup) continue;
    for (const [k, v] of Object.entries(times)) (steps[k] ??= []).push(v);
    agree.push(a1 - a0);
    rest.push(times.total - (a1 - a0));
    afterDelivery.push((times.delivery ?? 0) + (times.checks ?? 0) + (times.verdicts ?? 0));
  }
  const out = {
    patients: n,
    proofs,
    reps,
    warmup,
    round: summary(steps.total),
    after_delivery: summary(afterDelivery),
    key_agreement: summary(agree),
    rest: summary(rest),
    steps: Object.fromEntries(
      Object.entries(steps).filter(([k]) => k !== 'total').map(([k, v]) => [k, summary(v)])),
    frames_identical: true,
    timer_resolution_ms: timerResolution(),
    cross_origin_isolated: self.crossOriginIsolated === true,
  };
  outEl.textContent += JSON.stringify(out) + '\n';
  return out;
};

window.runProve = async (label, studyJson, reps, warmup) => {
  const p = new BenchProof(studyJson, 1);
  const xs = [];
  let len = 0;
  for (let r = 0; r < warmup + reps; r++) {
    const a = performance.now();
    len = p.run();
    const b = performance.now();
    if (r >= warmup) xs.push(b - a);
  }
  const out = {
    prove: label, gadget_calls: p.gadgetCalls, proven_len: len, reps, warmup,
    ms: summary(xs), timer_resolution_ms: timerResolution(),
    cross_origin_isolated: self.crossOriginIsolated === true,
  };
  p.free();
  outEl.textContent += JSON.stringify(out) + '\n';
  return out;
};

function timerResolution() {
  let best = Infinity;
  for (let i = 0; i < 200; i++) {
    const a = performance.now();
    let b = performance.now();
    while (b === a) b = performance.now();
    best = Math.min(best, b - a);
  }
  return Math.round(best * 1e6) / 1e6;
}

try {
  await init();
  statusEl.textContent = 'ready';
} catch (e) {
  statusEl.textContent = `failed: ${e}`;
}
