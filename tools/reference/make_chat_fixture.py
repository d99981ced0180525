#!/usr/bin/env python3
"""Writes tests/fixtures/chat/expected.jsonl: for each conversation of
tests/fixtures/chat/conversations.jsonl ({"messages": [{"role", "content", "reasoning_content"?}]}),
the token ids and assistant mask that Hugging Face's tokenizer.apply_chat_template gives with the
DeepSeek-R1-Distill tokenizer, which tests/core/test_data_formats.cpp compares r1dist's chat
rendering with (docs/DATA.md, "Chat formatting").

usage: python3 tools/reference/make_chat_fixture.py TOKENIZER_DIR [CONVERSATIONS] [OUT]
  TOKENIZER_DIR: a directory with tokenizer.json + tokenizer_config.json whose chat_template is
  the official R1-Distill one (.deps/tokenizer-r1, written by tools/js/make_r1_tokenizer.mjs, or
  a DeepSeek-R1-Distill-Qwen model directory). Needs transformers; no network.

What is compared, per conversation (a training row):
  * The text is what apply_chat_template renders for the conversation, except that the last
    assistant turn keeps its reasoning: the template drops everything up to "</think>" from
    every assistant turn, so that turn's content is rendered as a placeholder that is then
    replaced by "<think>\\n" + reasoning + "\\n</think>\\n\\n" + answer (reasoning from
    "reasoning_content" or from before the last "</think>" of the content, a leading "<think>"
    dropped, reasoning and answer stripped of surrounding whitespace). Earlier assistant turns
    are left to the template (their content after the last "</think>"). Without reasoning the
    text is the template's own, and the ids are checked against apply_chat_template(tokenize=True).
  * ids: the text tokenized without added special tokens (the template writes BOS itself).
  * assistant_mask: 1 for the tokens of each assistant turn after its "<｜Assistant｜>" token,
    through its "<｜end▁of▁sentence｜>" (from return_assistant_tokens_mask when the template
    marks {% generation %} blocks; the official one does not, so from rendered prefixes: turn k
    spans from the end of render(messages[:k]) + "<｜Assistant｜>" to the end of
    render(messages[:k + 1])).
"""
import json
import os
import sys

ASSISTANT = "<\uff5cAssistant\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
PLACEHOLDER = "\u0000R1DIST_LAST_ASSISTANT\u0000"


def split_think(turn):
    content = turn.get("content") or ""
    close = content.rfind("</think>")
    if close >= 0:
        before = content[:close].lstrip()
        if before.startswith("<think>"):
            before = before[len("<think>"):]
        return True, before.strip(), content[close + len("</think>"):].strip()
    reasoning = turn.get("reasoning_content") or ""
    if not reasoning.strip():
        return False, "", content
    return True, reasoning.strip(), content.strip()


def hf_messages(messages):
    # The template reads role and content only.
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    from transformers import PreTrainedTokenizerFast

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    conv_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "tests/fixtures/chat/conversations.jsonl")
    out_path = sys.argv[3] if len(sys.argv) > 3 else os.path.join(root, "tests/fixtures/chat/expected.jsonl")
    # The R1-Distill tokenizer_config.json names LlamaTokenizerFast; transformers 5 then builds
    # a Llama tokenizer (a Metaspace pre-tokenizer) instead of running tokenizer.json as it is
    # ("What is 2 + 2?" loses its spaces). PreTrainedTokenizerFast runs tokenizer.json itself,
    # with the chat template and special tokens of tokenizer_config.json.
    tok = PreTrainedTokenizerFast.from_pretrained(sys.argv[1])
    if "split('</think>')" not in (tok.chat_template or ""):
        sys.exit(f"{sys.argv[1]}: its chat_template is not the official R1-Distill one (no </think> split)\n"
                 "HINT: regenerate it with node tools/js/make_r1_tokenizer.mjs .deps/tokenizer-r1")

    def render(msgs, **kw):
        return tok.apply_chat_template(hf_messages(msgs), tokenize=False, **kw)

    def encode(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def template_ids(msgs, **kw):
        # transformers 5 returns a BatchEncoding from tokenize=True (return_dict), 4.x a list.
        out = tok.apply_chat_template(hf_messages(msgs), tokenize=True, **kw)
        if hasattr(out, "keys"):
            out = out["input_ids"]
        if out and isinstance(out[0], list):
            out = out[0]
        return list(out)

    rows = []
    with open(conv_path, encoding="utf-8") as f:
        convs = [json.loads(line)["messages"] for line in f if line.strip()]
    for n, msgs in enumerate(convs):
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        has_think, reasoning, answer = split_think(msgs[last])
        body = None
        if has_think:
            body = "<think>\n" + reasoning + "\n</think>\n\n" + answer
            with_placeholder = [dict(m) for m in msgs]
            with_placeholder[last]["content"] = PLACEHOLDER
            text = render(with_placeholder)
            assert text.count(PLACEHOLDER) == 1, n
            text = text.replace(PLACEHOLDER, body)
        else:
            text = render(msgs)
        ids = encode(text)
        if not has_think:
            direct = template_ids(msgs)
            assert direct == ids, f"conversation {n}: apply_chat_template(tokenize=True) differs from the text's ids"
        else:
            # Texts, not ids: "<think>\n" ends the generation prompt, and a training text's
            # "<think>\n\n</think>" (empty reasoning) merges its newlines into one token.
            prompt = render(msgs[:last], add_generation_prompt=True)
            assert text.startswith(prompt), f"conversation {n}: the generation prompt is not a prefix"

        # Assistant spans in characters, from rendered prefixes.
        spans = []
        for k, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = len(render(msgs[:k]) if k else tok.bos_token) + len(ASSISTANT)
            if k == last and has_think:
                end = start + len(body) + len(EOS)
            else:
                upto = render(msgs[: k + 1])
                assert text.startswith(upto), f"conversation {n}: render(messages[:{k + 1}]) is not a prefix"
                end = len(upto)
            assert text[start - len(ASSISTANT):start] == ASSISTANT and text[end - len(EOS):end] == EOS, (n, k)
            spans.append((start, end))
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        mask = []
        for a, b in enc["offset_mapping"]:
            inside = any(s <= a and b <= e for s, e in spans)
            straddles = any(a < s < b or a < e < b for s, e in spans)
            assert not straddles, f"conversation {n}: a token straddles an assistant span boundary"
            mask.append(1 if inside else 0)
        rows.append({"conversation": n, "text": text, "ids": ids, "assistant_mask": mask})

    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, out_path)
    print(f"wrote {out_path}: {len(rows)} conversations")


if __name__ == "__main__":
    main()
