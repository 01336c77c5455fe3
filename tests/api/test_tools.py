"""Tool calling through `tide serve`'s API with the official `openai` client, on tiny random
models that carry real vocabularies and real chat templates (scripts/make_tool_models.py):
Qwen2.5's (Hermes-style <tool_call> blocks) and Llama 3.1's (a JSON object as the reply).

A random model rarely calls a tool by itself, so calls are forced ("required", a named function):
the calls must come back as `tool_calls` whose arguments validate against the tool's schema
(jsonschema, an independent validator), with finish_reason "tool_calls", streamed calls
reassembled equal to the whole reply's (greedy), and a follow-up turn carrying the assistant's
calls and the tools' replies is accepted and answered. What the tool fields refuse is refused
with the field's name.

Run by scripts/test.sh: TIDE_BIN=target/release/tide python tests/api/test_tools.py
"""
import json
import os
import subprocess
import sys
import unittest

import jsonschema
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_openai import Server  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(os.environ.get("TIDE_CACHE") or os.path.join(REPO, ".cache"), "tool-models")

# Bounded values only: a random model under a grammar writes strings and numbers to the end.
WEATHER = {"type": "object", "properties": {
    "city": {"type": "string", "enum": ["Paris", "Oslo", "Lima"]},
    "days": {"type": "integer", "minimum": 1, "maximum": 7},
    "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city", "days"], "additionalProperties": False}
ALARM = {"type": "object", "properties": {"on": {"type": "boolean"}},
         "required": ["on"], "additionalProperties": False}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The forecast.",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "set_alarm", "parameters": ALARM}},
]
SCHEMAS = {"get_weather": WEATHER, "set_alarm": ALARM}
ASK = [{"role": "user", "content": "What will the weather be in Paris?"}]


def models():
    paths = {n: os.path.join(MODELS, f"{n}-tools.gguf") for n in ("qwen25", "llama31")}
    if not all(os.path.exists(p) for p in paths.values()):
        subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_tool_models.py"),
                        "--out", MODELS], check=True)
    return paths


def reassemble(chunks):
    """A stream's calls by index ({id, name, arguments}), its content and finish reason."""
    calls, content, finish = {}, "", None
    for c in chunks:
        if not c.choices:
            continue
        ch = c.choices[0]
        content += ch.delta.content or ""
        for tc in ch.delta.tool_calls or []:
            d = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            d["id"] = tc.id or d["id"]
            if tc.function:
                d["name"] += tc.function.name or ""
                d["arguments"] += tc.function.arguments or ""
        finish = ch.finish_reason or finish
    return [calls[i] for i in sorted(calls)], content, finish


class Tools(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        paths = models()
        cls.servers = {n: Server("--model", p, "--ctx", "1024") for n, p in paths.items()}

    @classmethod
    def tearDownClass(cls):
        for s in cls.servers.values():
            s.close()

    def chat(self, s, stream=False, **kw):
        kw.setdefault("messages", ASK)
        kw.setdefault("tools", TOOLS)
        kw.setdefault("max_tokens", 80)
        return s.client.chat.completions.create(model=s.model, temperature=0, stream=stream, **kw)

    def test_forced_calls_validate_and_stream_as_they_come_whole(self):
        named = lambda n: {"type": "function", "function": {"name": n}}  # noqa: E731
        for name, s in self.servers.items():
            for choice in ["required", named("get_weather"), named("set_alarm")]:
                with self.subTest(model=name, choice=choice):
                    r = self.chat(s, tool_choice=choice)
                    ch = r.choices[0]
                    self.assertEqual(ch.finish_reason, "tool_calls", ch.message)
                    self.assertIsNone(ch.message.content)
                    self.assertEqual(len(ch.message.tool_calls), 1)
                    call = ch.message.tool_calls[0]
                    self.assertEqual(call.type, "function")
                    self.assertTrue(call.id.startswith("call_"), call.id)
                    if choice != "required":
                        self.assertEqual(call.function.name, choice["function"]["name"])
                    jsonschema.validate(json.loads(call.function.arguments),
                                        SCHEMAS[call.function.name])
                    calls, content, finish = reassemble(self.chat(s, stream=True, tool_choice=choice))
                    self.assertEqual(finish, "tool_calls")
                    self.assertEqual(content, "")
                    self.assertEqual([(c["name"], c["arguments"]) for c in calls],
                                     [(call.function.name, call.function.arguments)])
                    self.assertTrue(calls[0]["id"].startswith("call_"))

    def test_a_follow_up_turn_with_the_calls_and_their_results(self):
        for name, s in self.servers.items():
            with self.subTest(model=name):
                r = self.chat(s, tool_choice="required")
                call = r.choices[0].message.tool_calls[0]
                msgs = ASK + [
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": call.id, "type": "function",
                         "function": {"name": call.function.name,
                                      "arguments": call.function.arguments}}]},
                    {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear"}'}]
                for stream in (False, True):
                    r = self.chat(s, stream=stream, messages=msgs, max_tokens=8)
                    if stream:
                        _, _, finish = reassemble(r)
                    else:
                        finish = r.choices[0].finish_reason
                        self.assertGreater(r.usage.prompt_tokens, 0)
                    self.assertIn(finish, ("stop", "length", "tool_calls"))
                # "none": tools shown, the reply never read as calls.
                r = self.chat(s, messages=msgs, max_tokens=8, tool_choice="none")
                self.assertIsNone(r.choices[0].message.tool_calls)
                self.assertIsInstance(r.choices[0].message.content, str)
                # A tool reply that answers no call is refused.
                bad = msgs[:-1] + [{"role": "tool", "tool_call_id": "call_x", "content": "?"}]
                with self.assertRaises(openai.BadRequestError) as e:
                    self.chat(s, messages=bad, max_tokens=4)
                self.assertIn("no call there has the id 'call_x'", e.exception.body["message"])

    def test_bad_tool_fields_are_refused_by_name(self):
        s = self.servers["qwen25"]
        bad_name = [{"type": "function", "function": {"name": "get weather"}}]
        for kw, want in [
                ({"tools": TOOLS + bad_name}, "tools[2].function.name"),
                ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope'"),
                ({"tool_choice": "sometimes"}, "'tool_choice' must be"),
                ({"tool_choice": "required", "response_format": {"type": "json_object"}},
                 "'response_format' cannot be combined with 'tools'")]:
            with self.assertRaises(openai.BadRequestError, msg=str(kw)) as e:
                self.chat(s, max_tokens=4, **kw)
            self.assertIn(want, e.exception.body["message"])


class NoToolTemplate(unittest.TestCase):
    def test_a_template_without_tools_refuses_them(self):
        """The default model's template (ChatML, or SmolLM2's) never shows tools: refused."""
        s = Server()
        try:
            with self.assertRaises(openai.BadRequestError) as e:
                s.client.chat.completions.create(model=s.model, messages=ASK, tools=TOOLS,
                                                 max_tokens=4)
            self.assertIn("no tool support", e.exception.body["message"])
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]])
