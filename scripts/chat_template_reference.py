#!/usr/bin/env python3
"""Reference renders of real chat templates by Python's Jinja2, set up as Hugging Face's
apply_chat_template sets it up -> tests/fixtures/chat_templates.json.

    python3 scripts/chat_template_reference.py [--templates DIR] [--out FILE]

The templates are the ones scripts/fetch-vocabs.sh extracts into
${TIDE_CACHE:-<repo root>/.cache}/vocabs/templates/ (llama.cpp keeps them for its own template
tests), plus SmolLM2-135M-Instruct's and the Qwen2 vocabulary's (read from their GGUF files).
Each is rendered for three conversations (one user turn; system + user; system, user,
assistant, user) with add_generation_prompt=True and the model family's BOS/EOS text, and
tools=None as apply_chat_template passes it. The templates that show tools (TOOL_TEMPLATES) are
also rendered for TOOL_CONVERSATIONS: OpenAI request bodies' `tools` and `messages` (an
assistant's tool calls, `tool` replies), given to the template as Hugging Face documents them:
the tools as given, a call's `function.arguments` parsed from its JSON string into a dict. The
environment is Hugging Face's: a sandboxed Jinja2 environment with trim_blocks, lstrip_blocks and
the loopcontrols extension, raise_exception, a tojson filter over json.dumps, and strftime_now,
here at a fixed time (NOW, in UTC) so that the renders do not change. A render that raises is
recorded as an error.

Needs: Jinja2 and gguf (scripts/requirements.txt).
"""

import argparse
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOW = 1764460800 + 13 * 3600 + 7 * 60 + 5  # 2025-11-30 13:07:05 UTC

# template file -> (bos, eos) text as the model family's tokenizer config names them
TOKENS = {
    "meta-llama-Llama-3.1-8B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "meta-llama-Llama-3.2-3B-Instruct": ("<|begin_of_text|>", "<|eot_id|>"),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "Qwen-Qwen2.5-7B-Instruct": ("", "<|im_end|>"),
    "Qwen-Qwen3-0.6B": ("", "<|im_end|>"),
    "mistralai-Mistral-Nemo-Instruct-2407": ("<s>", "</s>"),
    "google-gemma-2-2b-it": ("<bos>", "<eos>"),
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "HuggingFaceTB-SmolLM3-3B": ("", "<|im_end|>"),
    "ibm-granite-granite-3.3-2B-Instruct": ("", "<|end_of_text|>"),
    "SmolLM2-135M-Instruct": ("<|im_start|>", "<|im_end|>"),
    "qwen2-vocab": ("<|endoftext|>", "<|endoftext|>"),
}
GGUF_TEMPLATES = {
    "SmolLM2-135M-Instruct": "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "qwen2-vocab": "vocabs/ggml-vocab-qwen2.gguf",
}
CONVERSATIONS = [
    [("user", "What is 2 + 2?")],
    [("system", "You are terse."), ("user", "Name a colour.")],
    [
        ("system", "You answer in French."),
        ("user", "Hello!"),
        ("assistant", "Bonjour !"),
        ("user", "How are you?\nTwo lines, \"quotes\" and {braces}."),
    ],
]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city, \"now\" <or> later & elsewhere.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "Città, e.g. Zürich"},
            "unit": {"type": "string", "enum": ["c", "f"]},
            "days": {"type": "integer", "minimum": 1}},
            "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "now", "description": "The time.",
        "parameters": {"type": "object", "properties": {}}}},
]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}
TOOL_CONVERSATIONS = [
    {"tools": TOOLS, "messages": [{"role": "user", "content": "Weather in Paris?"}]},
    {"tools": TOOLS, "messages": [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
    ]},
    {"tools": TOOLS[:1], "messages": [
        {"role": "user", "content": "Weather in Paris and the time?"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [
            CALL, {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
        {"role": "user", "content": "Thanks"},
    ]},
]
TOOL_TEMPLATES = ["meta-llama-Llama-3.1-8B-Instruct", "meta-llama-Llama-3.2-3B-Instruct",
                  "Qwen-Qwen2.5-7B-Instruct", "Qwen-Qwen3-0.6B"]


def hf_messages(msgs):
    """OpenAI messages as Hugging Face's templates take them: null content as "" (tide's
    choice for an assistant's turn beside its calls), arguments parsed into dicts."""
    out = []
    for m in msgs:
        m = dict(m)
        if m.get("content") is None:
            m["content"] = ""
        if m.get("tool_calls"):
            m["tool_calls"] = [dict(c, function=dict(c["function"], arguments=json.loads(c["function"]["arguments"])))
                               for c in m["tool_calls"]]
        out.append(m)
    return out


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.fromtimestamp(NOW, datetime.timezone.utc).strftime(fmt)
    return env


def gguf_template(path):
    import gguf

    r = gguf.GGUFReader(path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def main():
    cache = os.environ.get("TIDE_CACHE") or os.path.join(REPO_ROOT, ".cache")
    ap = argparse.ArgumentParser()
    ap.add_argument("--templates", default=os.path.join(cache, "vocabs", "templates"))
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "fixtures", "chat_templates.json"))
    args = ap.parse_args()
    env = environment()
    out = {"generator": "scripts/chat_template_reference.py", "jinja2": jinja2.__version__, "now_unix": NOW, "templates": []}
    for name, (bos, eos) in TOKENS.items():
        if name in GGUF_TEMPLATES:
            source = GGUF_TEMPLATES[name]
            text = gguf_template(os.path.join(cache, source))
        else:
            source = f"templates/{name}.jinja"
            with open(os.path.join(args.templates, f"{name}.jinja"), encoding="utf-8") as f:
                text = f.read()
        def render(msgs, tools):
            try:
                got = env.from_string(text).render(
                    messages=msgs, tools=tools, add_generation_prompt=True, bos_token=bos, eos_token=eos
                )
                return {"text": got}
            except jinja2.exceptions.TemplateError as e:
                return {"error": str(e)}

        renders = [render([{"role": r, "content": c} for r, c in conv], None) for conv in CONVERSATIONS]
        entry = {"name": name, "source": source, "bos": bos, "eos": eos, "renders": renders}
        if name in TOOL_TEMPLATES:
            entry["tool_renders"] = [render(hf_messages(c["messages"]), c["tools"]) for c in TOOL_CONVERSATIONS]
        kinds = ["error" if "error" in r else "ok" for r in renders + entry.get("tool_renders", [])]
        print(f"[chat_template_reference] {name}: {kinds}", file=sys.stderr)
        out["templates"].append(entry)
    out["conversations"] = [[list(m) for m in c] for c in CONVERSATIONS]
    out["tool_conversations"] = TOOL_CONVERSATIONS
    # strftime_now's conversions, by Python's datetime, over dates that test the calendar.
    fmt = "%Y %y %m %d %e %B %b %A %a %H %M %S %j %%"
    stamps = [0, 951782400, 951868799, 1709164800, 4107542399, NOW, 2**31 + 12345]
    out["strftime"] = [
        [t, fmt, datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(fmt)] for t in stamps
    ]
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
