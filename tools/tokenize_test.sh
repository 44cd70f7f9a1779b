#!/usr/bin/env bash
# //tools:tokenize end to end: Gemma 4's control tokens come out at their ids, --decode reverses
# --encode (U+2581 reads back as a space), --skip_special drops specials, bad input exits 2.
set -euo pipefail
tool=tools/tokenize
tok=third_party/tokenizer/gemma4/tokenizer.json
fail() { echo "FAIL: $*" >&2; exit 1; }

ids=$(printf '%s' '["<|turn>user\n<|image><|image|><image|><turn|>", "", "a  b\t\n\n c 日本 🤗 \u2581"]' |
  "$tool" --tokenizer "$tok")
python3 - "$ids" <<'PY'
import json, sys
ids = json.loads(sys.argv[1])
assert len(ids) == 3, ids
first = ids[0]
assert first[0] == 105 and first[-1] == 106, first
assert first[-4:-1] == [255999, 258880, 258882], first
assert ids[1] == [], ids[1]
assert len(ids[2]) > 5 and all(0 <= i < 262144 for i in ids[2]), ids[2]
PY
texts=$(printf '%s' "$ids" | "$tool" --tokenizer "$tok" --decode)
[ "$texts" = '["<|turn>user\n<|image><|image|><image|><turn|>","","a  b\t\n\n c 日本 🤗  "]' ] ||
  fail "decode gave $texts"
plain=$(printf '%s' "$ids" | "$tool" --tokenizer "$tok" --decode --skip_special)
[ "$plain" = '["user\n","","a  b\t\n\n c 日本 🤗  "]' ] || fail "skip_special gave $plain"
if printf '[1,' | "$tool" --tokenizer "$tok" 2>/dev/null; then fail "bad JSON accepted"; fi
if printf '[[1]]' | "$tool" --tokenizer "$tok" 2>/dev/null; then fail "ids accepted for encode"; fi
if printf '["a"]' | "$tool" --tokenizer /nonexistent 2>/dev/null; then fail "missing file accepted"; fi
echo PASS
