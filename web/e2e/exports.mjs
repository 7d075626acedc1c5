// Checks the production wasm bundle (web/www/pkg, or the directory given) exports no
// benchmark-only or seeded API: lists the names in its TypeScript declarations and the wasm
// module's own exports, fails if any looks like `bench` or `seed`, and fails too if the API the
// pages use is missing (so that a wrong or empty bundle cannot pass).
//
//   node web/e2e/exports.mjs [web/www/pkg]

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

const dir = process.argv[2] ?? 'web/www/pkg';
const FORBIDDEN = /bench|seed/i;
// What web/www/js uses; see web/README.md.
const REQUIRED = ['Patient', 'withAnswers', 'checkValue', 'checkAnswer', 'checkAnswers', 'checkStudySpec',
    'checkStudyJson', 'bucketEdges', 'protocolVersion'];

const dts = await readFile(join(dir, 'cohort_web.d.ts'), 'utf8');
const declared = new Set();
for (const m of dts.matchAll(/^export (?:default )?(?:declare )?(?:function|class|const|let|type|interface|enum)\s+([A-Za-z_$][\w$]*)/gm)) {
    declared.add(m[1]);
}
// Methods and fields of the exported classes: a seeded constructor could hide there too.
for (const m of dts.matchAll(/^\s+(?:static\s+)?(?:readonly\s+)?([A-Za-z_$][\w$]*)\s*[(:]/gm)) {
    declared.add(m[1]);
}
const wasm = await readFile(join(dir, 'cohort_web_bg.wasm'));
const wasmExports = WebAssembly.Module.exports(new WebAssembly.Module(wasm)).map((e) => e.name);

const problems = [];
for (const name of REQUIRED) {
    if (!declared.has(name)) problems.push(`missing export ${name} in cohort_web.d.ts`);
}
if (wasmExports.length === 0) problems.push('the wasm module exports nothing');
for (const name of declared) {
    if (FORBIDDEN.test(name)) problems.push(`bench/seeded name in cohort_web.d.ts: ${name}`);
}
for (const name of wasmExports) {
    if (FORBIDDEN.test(name)) problems.push(`bench/seeded wasm export: ${name}`);
}
if (problems.length > 0) {
    for (const p of problems) console.error(`exports: ${p}`);
    process.exit(1);
}
console.log(`exports: ${dir}: ${declared.size} declared names, ${wasmExports.length} wasm exports, none bench-only or seeded`);
