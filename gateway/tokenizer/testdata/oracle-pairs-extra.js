// Extra pair expectations (cross-encoder input) beyond expected-pairs/: both
// texts of any length, small budgets both odd and even, truncation from the
// left and the right, with and without special tokens, on every tokenizer
// here; plus hand-made pairs around Rust's early exit (a text being
// truncated is tokenized only until its words reach max_length tokens,
// added tokens not counting as a stop), which decides who keeps the odd
// token when both texts are long.
//
// usage: npm install tokenizers@0.23.2
//        node oracle-pairs-extra.js TESTDATA_DIR OUT.jsonl.gz
//
// First line: {"edge": [texts]}. Then one line per encoding:
// {"tok", "a", "b", "max", "left", "special", "ids", "type_ids"}: a and b are
// corpus ids, or -1-i for edge text i; max 0 = no truncation.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const { Tokenizer } = require('tokenizers');

const [dir, outFile] = process.argv.slice(2);
const TOKENIZERS = ['minilm', 'bert-cased-wp', 'roberta-bpe', 'roberta-bpe-prefix', 'xlmr-unigram',
  'xlmr-precompiled', 'qwen3emb', 'qwenstyle-bpe', 'llama2', 'llama3'];
const corpus = fs.readFileSync(path.join(dir, 'corpus.jsonl'), 'utf8').split('\n').filter(Boolean)
  .map(l => JSON.parse(l)).filter(c => c.b64 === undefined && c.text.trim() !== '');
const text = new Map(corpus.map(c => [c.id, c.text]));
let s = 4242;
const rnd = () => { s = (s * 1103515245 + 12345) & 0x7fffffff; return s / 0x7fffffff; };
const corpusPairs = Array.from({ length: 120 }, () =>
  [corpus[Math.floor(rnd() * corpus.length)].id, corpus[Math.floor(rnd() * corpus.length)].id]);
const edge = [
  '[SEP] <s> '.repeat(30),
  'x '.repeat(60),
  '[MASK][MASK] <mask> <|endoftext|><|endoftext|> </s><s> '.repeat(6),
  'supercalifragilisticexpialidocious antidisestablishmentarianism '.repeat(4),
  '日本語のテキストです。'.repeat(4),
  '😀🎉👍 '.repeat(8),
  'a b c d e f g h i j k l m n o p',
  'The quick brown fox jumps over the lazy dog.',
];
const edgePairs = [];
for (let i = 0; i < edge.length; i++) for (let j = 0; j < edge.length; j++) edgePairs.push([-1 - i, -1 - j]);
const get = id => (id < 0 ? edge[-1 - id] : text.get(id));

(async () => {
  const out = [JSON.stringify({ edge })];
  for (const name of TOKENIZERS) {
    const tk = Tokenizer.fromFile(path.join(dir, name + '.json'));
    tk.disableTruncation(); tk.disablePadding();
    const nPair = (await tk.encode('', '', { addSpecialTokens: true })).getIds().length;
    const cfgs = [];
    for (const left of [false, true]) {
      for (let m = nPair + 1; m <= nPair + 8; m++) cfgs.push({ max: m, left, special: true, edge: true });
      for (let m = 1; m <= 6; m++) cfgs.push({ max: m, left, special: false, edge: true });
      for (const m of [9, 10]) cfgs.push({ max: m, left, special: true, corpus: true });
      cfgs.push({ max: 33, left, special: false, corpus: true });
    }
    cfgs.push({ max: 0, left: false, special: false, edge: true });
    for (const c of cfgs) {
      tk.disableTruncation();
      if (c.max) tk.setTruncation(c.max, { direction: c.left ? 'left' : 'right', strategy: 'LongestFirst', stride: 0 });
      for (const [a, b] of (c.edge ? edgePairs : corpusPairs)) {
        const e = await tk.encode(get(a), get(b), { addSpecialTokens: c.special });
        out.push(JSON.stringify({ tok: name, a, b, max: c.max, left: c.left, special: c.special, ids: e.getIds(), type_ids: e.getTypeIds() }));
      }
    }
  }
  fs.writeFileSync(outFile, zlib.gzipSync(out.join('\n') + '\n'));
  console.error(outFile, out.length - 1, 'encodings');
})().catch(e => { console.error(e); process.exit(1); });
