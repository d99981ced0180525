#!/usr/bin/env bash
# Fills .deps/hf-parity/ (ignored) with what the HF `tokenizers` comparison on the GPU
# machine needs: the R1 tokenizer, the parity corpus plus the texts where the JS reference
# differs from HF (tests/fixtures/tokenizer/js_divergent.jsonl), r1dist's ids for them and
# its decoding of those ids, and
# the tokenizer benchmark with the two shared libraries it needs that the GPU image lacks
# (PCRE2, ICU 72), and the HF script itself, so the folder is all the GPU machine needs.
# Run after tools/install-deps.sh and tools/build.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.deps/hf-parity
rm -rf "$out"
mkdir -p "$out/lib" "$out/tokenizer"
cp .deps/tokenizer-r1/tokenizer.json .deps/tokenizer-r1/tokenizer_config.json "$out/tokenizer/"
node tools/js/make_corpus.mjs ../shared/data/medical_o1_sample_en.json tests/fixtures/tokenizer/cases.jsonl \
  .deps/tokenizer-r1 "$out/corpus.jsonl"
node -e 'for (const l of require("fs").readFileSync(process.argv[1], "utf8").split("\n"))
           if (l) console.log(JSON.stringify(JSON.parse(l).text))' \
  tests/fixtures/tokenizer/js_divergent.jsonl >> "$out/corpus.jsonl"
./build/r1dist tokenize --tokenizer .deps/tokenizer-r1 --jsonl "$out/corpus.jsonl" --threads 1 > "$out/r1dist_ids.jsonl"
./build/r1dist tokenize --tokenizer .deps/tokenizer-r1 --jsonl "$out/r1dist_ids.jsonl" --decode > "$out/r1dist_decoded.jsonl"
cp build/r1dist_bench_tokenizer tools/reference/hf_tokenizers_parity.py "$out/"
for lib in $(ldd build/r1dist_bench_tokenizer | awk '/pcre2-8|icuuc|icudata/ {print $3}'); do cp -L "$lib" "$out/lib/"; done
echo "prepare_hf_parity: $(wc -l < "$out/corpus.jsonl") texts in $out ($(du -sh "$out" | cut -f1))"
