"""`tide serve`'s OpenAI-compatible API driven by the official `openai` Python client (and raw
HTTP where a client cannot send the request: malformed JSON, an oversized body), on loopback.

Greedy replies must equal what the native `tide generate --temperature 0 --json` gives for the
same prompt (the same engine, so the same tokens), with the prefix cache reusing a slot's K/V
or not; streamed replies must equal whole ones;
concurrent requests must each equal the same request run alone; errors must be OpenAI-style
JSON with the right status; a client that leaves must free the engine; a GPU device lost in the
middle of a request fails that request (503) and the server answers the next on a new device.

Run by scripts/test.sh: TIDE_BIN=target/release/tide python tests/api/test_openai.py
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import unittest

import openai
import jsonschema
from prometheus_client.parser import text_string_to_metric_families

TIDE = os.environ.get("TIDE_BIN", "target/release/tide")
PROMPTS = ["In the beginning God created", "The history of the city", "To be, or not to be"]


class Server:
    """`tide serve` on a free loopback port with the embedded default model, on the GPU (lavapipe
    here: continuous batching and device loss are the GPU decoder's) unless args name a backend."""

    def __init__(self, *args):
        backend = [] if "--backend" in args else ["--backend", "gpu"]
        self.p = subprocess.Popen([TIDE, "serve", "--port", "0", "--web", "web", *backend, *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.p.stdout.readline().strip()
        assert self.url.startswith("http://127.0.0.1:"), f"no URL from tide serve: {self.url!r}"
        host, port = self.url[len("http://"):].rstrip("/").split(":")
        self.host, self.port = host, int(port)
        self.first_health = self.get("/health")
        deadline = time.time() + 120
        while self.get("/health")[0] != 200:
            assert time.time() < deadline, "the model did not load within 120 s"
            time.sleep(0.1)
        self.client = openai.OpenAI(base_url=self.url + "v1", api_key="none", max_retries=0,
                                    timeout=120)
        keyed = any(a.startswith("--api-key") for a in args)
        self.model = "tide-k4" if keyed else self.client.models.list().data[0].id

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=120)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def get(self, path):
        s, data = self.request("GET", path)
        return s, json.loads(data)

    def metrics(self, headers=None):
        """/metrics parsed: {(sample name, labels as a sorted tuple): value}."""
        status, data = self.request("GET", "/metrics", headers=headers)
        assert status == 200, (status, data)
        return {(smp.name, tuple(sorted(smp.labels.items()))): smp.value
                for fam in text_string_to_metric_families(data.decode()) for smp in fam.samples}

    def close(self):
        self.p.terminate()
        self.p.wait(10)


def native(prompt, n, backend="gpu"):
    out = subprocess.run([TIDE, "generate", "--backend", backend, "--temperature", "0", "--json",
                          "--max-tokens", str(n), prompt], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


class Api(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = Server("--queue", "8", "--parallel", "4")
        cls.c = cls.s.client

    @classmethod
    def tearDownClass(cls):
        cls.s.close()

    def complete(self, prompt, n=16, **kw):
        kw.setdefault("temperature", 0)
        return self.c.completions.create(model=self.s.model, prompt=prompt, max_tokens=n, **kw)

    def test_health_models(self):
        status, body = self.s.first_health
        self.assertIn(status, (200, 503))
        if status == 503:
            self.assertEqual(body["status"], "loading")
        status, body = self.s.get("/health")
        self.assertEqual((status, body["status"]), (200, "ok"))
        models = self.c.models.list().data
        self.assertEqual(len(models), 1)
        self.assertEqual((models[0].id, models[0].object), ("tide-k4", "model"))

    def test_completion_equals_native_greedy(self):
        for p in PROMPTS:
            want = native(p, 16)
            r = self.complete(p)
            self.assertEqual(r.object, "text_completion")
            self.assertEqual(r.choices[0].text, want["text"], p)
            self.assertEqual(r.choices[0].finish_reason, "length")
            self.assertEqual((r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens),
                             (len(want["prompt_tokens"]), 16, len(want["prompt_tokens"]) + 16))

    def test_readme_curl_quick_start(self):
        """README.md's curl command, as written, on this server's port."""
        with open(os.path.join(os.path.dirname(__file__), "../../README.md")) as f:
            readme = f.read()
        lines = readme.split("\n")
        start = next(i for i, l in enumerate(lines) if l.startswith("curl "))
        cmd = lines[start]
        while cmd.endswith("\\"):
            start += 1
            cmd = cmd[:-1] + lines[start]
        self.assertIn("http://127.0.0.1:8080/", cmd)
        cmd = cmd.replace("http://127.0.0.1:8080/", self.s.url)
        out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, check=True).stdout
        body = json.loads(out)
        req = json.loads(cmd.split("-d '", 1)[1].rsplit("'", 1)[0])
        want = native(req["prompt"], req["max_tokens"])
        self.assertEqual(body["choices"][0]["text"], want["text"])

    def test_streams_equal_whole_replies(self):
        whole = self.complete(PROMPTS[0])
        chunks = list(self.complete(PROMPTS[0], stream=True,
                                    stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, whole.choices[0].text)
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finals, ["length"])
        # The usage chunk comes last, with no choices; the others carry usage null.
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual(chunks[-1].usage.completion_tokens, 16)
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))

        msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
        whole = self.c.chat.completions.create(model=self.s.model, messages=msgs, max_tokens=12,
                                               temperature=0)
        self.assertEqual(whole.object, "chat.completion")
        self.assertEqual(whole.choices[0].message.role, "assistant")
        self.assertEqual(whole.usage.completion_tokens, 12)
        stream = list(self.c.chat.completions.create(model=self.s.model, messages=msgs,
                                                     max_tokens=12, temperature=0, stream=True))
        self.assertEqual(stream[0].choices[0].delta.role, "assistant")
        self.assertTrue(all(c.object == "chat.completion.chunk" for c in stream))
        text = "".join(c.choices[0].delta.content or "" for c in stream)
        self.assertEqual(text, whole.choices[0].message.content)
        self.assertEqual(stream[-1].choices[0].finish_reason, "length")
        self.assertTrue(all(c.choices[0].finish_reason is None for c in stream[:-1]))

    def test_stop_strings(self):
        full = self.complete(PROMPTS[1], 24).choices[0].text
        stop = full[8:11]
        self.assertEqual(len(stop), 3, full)
        r = self.complete(PROMPTS[1], 24, stop=[stop, "\u0000never"])
        self.assertEqual(r.choices[0].text, full[:full.index(stop)])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        streamed = "".join(c.choices[0].text for c in self.complete(PROMPTS[1], 24, stop=stop, stream=True))
        self.assertEqual(streamed, r.choices[0].text)

    def test_logprobs(self):
        r = self.complete(PROMPTS[0], 8, logprobs=3)
        lp = r.choices[0].logprobs
        self.assertEqual(len(lp.tokens), 8)
        self.assertEqual("".join(lp.tokens), r.choices[0].text)
        for tok, p, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
            self.assertEqual(len(top), 3)
            self.assertLessEqual(p, 0.0)
            # Greedy: the chosen token is the most likely one; three probabilities sum to <= 1.
            self.assertAlmostEqual(p, max(top.values()), places=5)
            self.assertLessEqual(sum(2.718281828 ** v for v in top.values()), 1.0 + 1e-4)
        c = self.c.chat.completions.create(model=self.s.model, max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": "Hi"}],
                                           logprobs=True, top_logprobs=2)
        content = c.choices[0].logprobs.content
        self.assertEqual(len(content), 4)
        self.assertTrue(all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content))

    def test_seeded_sampling_repeats(self):
        a = self.complete(PROMPTS[2], 12, temperature=0.9, top_p=0.9, seed=7).choices[0].text
        b = self.complete(PROMPTS[2], 12, temperature=0.9, top_p=0.9, seed=7).choices[0].text
        self.assertEqual(a, b)

    def test_concurrent_requests_equal_their_solo_runs(self):
        # Six requests of mixed lengths on four slots: four decode together, two wait and
        # join between steps as slots free up.
        reqs = [(p, n) for n in (12, 5) for p in PROMPTS]
        solo = {r: self.complete(*r).choices[0].text for r in reqs}
        shared = self.s.get("/health")[1]["shared_steps"]
        got = {}

        def one(r):
            got[r] = "".join(c.choices[0].text for c in self.complete(*r, stream=True))

        threads = [threading.Thread(target=one, args=(r,)) for r in reqs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(got, solo)
        # They ran together: decode steps that several requests shared.
        h = self.s.get("/health")[1]
        self.assertEqual(h["slots"], 4)
        self.assertGreater(h["shared_steps"], shared, h)

    def test_errors(self):
        with self.assertRaises(openai.NotFoundError) as e:
            self.c.completions.create(model="no-such-model", prompt="x", max_tokens=1)
        self.assertEqual(e.exception.body["code"], "model_not_found")
        with self.assertRaises(openai.BadRequestError) as e:
            self.complete("word " * 400, 4)  # the default model's context is 256 tokens
        self.assertEqual(e.exception.body["code"], "context_length_exceeded")
        for bad in [dict(temperature=3), dict(n=2), dict(stop=["a", "b", "c", "d", "e"]),
                    dict(presence_penalty=0.5), dict(frequency_penalty=-1)]:
            with self.assertRaises(openai.BadRequestError, msg=str(bad)) as e:
                self.c.completions.create(model=self.s.model, prompt="x", max_tokens=1, **bad)
            key = next(iter(bad))
            if key.endswith("penalty"):
                self.assertIn(key, e.exception.body["message"])
        with self.assertRaises(openai.BadRequestError):
            self.c.chat.completions.create(model=self.s.model, messages=[], max_tokens=1)
        status, body = self.s.request("POST", "/v1/completions", b"{not json",
                                      {"Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["error"]["type"], "invalid_request_error")
        # The body limit is 1 MiB exactly: a request padded (with JSON whitespace) to 1 MiB is
        # answered, one byte more is refused with 413.
        small = json.dumps({"model": self.s.model, "prompt": PROMPTS[0], "max_tokens": 2})
        for size, want in [(1 << 20, 200), ((1 << 20) + 1, 413)]:
            body = (small + " " * (size - len(small))).encode()
            self.assertEqual(len(body), size)
            status, reply = self.s.request("POST", "/v1/completions", body,
                                           {"Content-Type": "application/json"})
            self.assertEqual(status, want, f"a body of {size} bytes")
            if want == 413:
                self.assertIn("error", json.loads(reply))
        # The server still answers after all of that.
        self.assertEqual(self.complete(PROMPTS[0], 2).usage.completion_tokens, 2)

    def test_the_prefix_cache_reuses_a_slot_and_keeps_replies(self):
        """The same chat twice, then its next turn: the second reuses all its prompt but the
        last token, the next turn at least the first's prompt; every greedy reply equals the
        server's reply with the cache off (a second server, --no-prefix-cache)."""
        sys_msg = {"role": "system", "content": "You answer in one line about kings and mills."}
        turn = [sys_msg, {"role": "user", "content": "Who lived in the old mill?"}]
        chat = lambda msgs: self.c.chat.completions.create(model=self.s.model, messages=msgs,
                                                           max_tokens=10, temperature=0)
        before = self.s.metrics()
        a, b = chat(turn), chat(turn)
        self.assertEqual(a.choices[0].message.content, b.choices[0].message.content)
        # (a may reuse the chat template's start from an earlier test's request.)
        self.assertLess(a.usage.prompt_tokens_details.cached_tokens, a.usage.prompt_tokens - 1)
        self.assertEqual(b.usage.prompt_tokens_details.cached_tokens, b.usage.prompt_tokens - 1)
        nxt = turn + [{"role": "assistant", "content": a.choices[0].message.content},
                      {"role": "user", "content": "And then?"}]
        c = chat(nxt)
        self.assertGreaterEqual(c.usage.prompt_tokens_details.cached_tokens, a.usage.prompt_tokens)
        after = self.s.metrics()
        hits = after[("tide_prefix_cache_hits_total", ())] - before[("tide_prefix_cache_hits_total", ())]
        self.assertGreaterEqual(hits, 2)
        off = Server("--no-prefix-cache")
        try:
            chat_off = lambda msgs: off.client.chat.completions.create(
                model=off.model, messages=msgs, max_tokens=10, temperature=0)
            for msgs, cached in [(turn, a), (turn, b), (nxt, c)]:
                r = chat_off(msgs)
                self.assertEqual(r.choices[0].message.content, cached.choices[0].message.content)
                self.assertEqual(r.usage.prompt_tokens_details.cached_tokens, 0)
        finally:
            off.close()

    def test_metrics_in_prometheus_text(self):
        before = self.s.metrics()
        r = self.complete(PROMPTS[1], 5)
        with self.assertRaises(openai.BadRequestError):
            self.c.completions.create(model=self.s.model, prompt="x", max_tokens=1, n=2)
        m = self.s.metrics()
        delta = lambda name, labels=(): m.get((name, labels), 0) - before.get((name, labels), 0)
        self.assertGreaterEqual(delta("tide_requests_total", (("status", "200"),)), 1)
        self.assertGreaterEqual(delta("tide_requests_total", (("status", "400"),)), 1)
        self.assertGreaterEqual(delta("tide_generated_tokens_total"), 5)
        self.assertGreaterEqual(delta("tide_prompt_tokens_total"), r.usage.prompt_tokens)
        self.assertGreaterEqual(delta("tide_time_to_first_token_seconds_count"), 1)
        self.assertGreaterEqual(delta("tide_inter_token_seconds_count"), 4)
        # Buckets are cumulative and end at the count.
        for h in ["tide_time_to_first_token_seconds", "tide_inter_token_seconds"]:
            buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in m.items()
                              if k[0] == h + "_bucket"))
            self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
            self.assertEqual(buckets[-1], (float("inf"), m[(h + "_count", ())]))
        self.assertEqual(m[("tide_slots", ())], 4)
        self.assertEqual(m[("tide_queue_depth", ())], 0)

    def test_messages_are_validated(self):
        for msgs, want in [([{"role": "wizard", "content": "hi"}], "messages[0].role 'wizard'"),
                           ([{"role": "user", "content": None}], "messages[0].content is required")]:
            with self.assertRaises(openai.BadRequestError) as e:
                self.c.chat.completions.create(model=self.s.model, messages=msgs, max_tokens=1)
            self.assertIn(want, e.exception.body["message"])
        # The prompt and max_tokens together over the context (256): refused, not cut short.
        with self.assertRaises(openai.BadRequestError) as e:
            self.c.completions.create(model=self.s.model, prompt="word " * 100, max_tokens=200)
        self.assertEqual(e.exception.body["code"], "context_length_exceeded")
        # No CORS headers unless --cors names the origin.
        status, _ = self.s.request("OPTIONS", "/v1/models", headers={
            "Origin": "http://example.org", "Access-Control-Request-Method": "GET"})
        c = http.client.HTTPConnection(self.s.host, self.s.port, timeout=30)
        c.request("GET", "/v1/models", headers={"Origin": "http://example.org"})
        r = c.getresponse()
        r.read()
        self.assertIsNone(r.getheader("access-control-allow-origin"))
        c.close()

    def test_embeddings(self):
        """/v1/embeddings through the client (which asks for base64 by default): unit vectors
        of the model's width, a batch equal to its inputs one by one, float and base64 equal,
        token-id input equal to its text; bad requests refused by name. (Agreement with
        llama.cpp's embeddings is tests/embeddings.rs's.)"""
        texts = ["The king walked to the mill.", "In the beginning God created"]
        batch = self.c.embeddings.create(model=self.s.model, input=texts)
        self.assertEqual([d.index for d in batch.data], [0, 1])
        vecs = [d.embedding for d in batch.data]
        self.assertEqual(len(vecs[0]), 192)  # tide-k4's width
        for v in vecs:
            self.assertAlmostEqual(sum(x * x for x in v), 1.0, places=4)
        alone = self.c.embeddings.create(model=self.s.model, input=texts[1]).data[0].embedding
        self.assertLess(max(abs(a - b) for a, b in zip(alone, vecs[1])), 1e-5)
        self.assertGreater(max(abs(a - b) for a, b in zip(vecs[0], vecs[1])), 1e-2)
        floats = self.c.embeddings.create(model=self.s.model, input=texts[1],
                                          encoding_format="float").data[0].embedding
        self.assertEqual(floats, alone)
        ids = native(texts[1], 1)["prompt_tokens"]
        by_ids = self.c.embeddings.create(model=self.s.model, input=[ids]).data[0].embedding
        self.assertLess(max(abs(a - b) for a, b in zip(by_ids, alone)), 1e-5)
        self.assertEqual(batch.usage.prompt_tokens, len(ids) + len(native(texts[0], 1)["prompt_tokens"]))
        for bad, want in [(dict(input=[]), "'input'"), (dict(input="x", dimensions=8), "'dimensions'"),
                          (dict(input=[[1, 2], [99999]]), "outside the vocabulary"),
                          (dict(input="x", encoding_format="int8"), "'encoding_format'")]:
            with self.assertRaises(openai.BadRequestError, msg=str(bad)) as e:
                self.c.embeddings.create(model=self.s.model, **bad)
            self.assertIn(want, e.exception.body["message"])

    SCHEMAS = [
        {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                          "age": {"type": "integer", "minimum": 0, "maximum": 120}},
         "required": ["name", "age"], "additionalProperties": False},
        {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]}},
         "required": ["colour"], "additionalProperties": False},
        {"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5},
         "minItems": 2, "maxItems": 4},
        {"type": "object", "properties": {"point": {"type": "object", "properties": {
            "x": {"type": "number"}, "y": {"type": "number"}}, "required": ["x", "y"],
            "additionalProperties": False}}, "required": ["point"], "additionalProperties": False},
        {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}},
         "required": ["code"], "additionalProperties": False},
        {"type": "boolean"},
        {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]},
                                                   "maxItems": 3},
                                          "ok": {"type": "boolean"}},
         "required": ["tags", "ok"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "circle"},
                                          "r": {"type": "number", "exclusiveMinimum": 0, "maximum": 10}},
         "required": ["kind", "r"], "additionalProperties": False},
        {"anyOf": [{"type": "integer", "maximum": 9}, {"type": "string", "maxLength": 3}]},
        {"type": "object", "properties": {"items": {"type": "array", "maxItems": 2, "items": {
            "type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 99},
                                             "label": {"type": "string", "maxLength": 8}},
            "required": ["id", "label"], "additionalProperties": False}}},
         "required": ["items"], "additionalProperties": False},
        {"$defs": {"leaf": {"type": "string", "enum": ["x", "y"]}}, "type": "object",
         "properties": {"left": {"$ref": "#/$defs/leaf"}, "right": {"$ref": "#/$defs/leaf"}},
         "required": ["left", "right"], "additionalProperties": False},
        {"type": "integer", "minimum": 10, "maximum": 20},
    ]

    def test_structured_output_validates_against_its_schema(self):
        """Each of 12 schemas (nested objects, arrays, enums, numbers, patterns, $ref, anyOf),
        greedy and sampled, whole and streamed: the reply parses and validates (jsonschema, an
        independent validator) and ends with finish_reason "stop"."""
        for i, schema in enumerate(self.SCHEMAS):
            rf = {"type": "json_schema", "json_schema": {"name": f"s{i}", "schema": schema}}
            for temperature in (0, 1.0):
                r = self.c.chat.completions.create(
                    model=self.s.model, messages=[{"role": "user", "content": "Answer in JSON."}],
                    max_tokens=200, temperature=temperature, seed=i, response_format=rf)
                text = r.choices[0].message.content
                self.assertEqual(r.choices[0].finish_reason, "stop", (schema, text))
                jsonschema.validate(json.loads(text), schema)
        # Streamed, and as a text completion; any JSON object.
        rf = {"type": "json_schema", "json_schema": {"name": "s", "schema": self.SCHEMAS[0]}}
        chunks = self.c.chat.completions.create(
            model=self.s.model, messages=[{"role": "user", "content": "JSON"}], max_tokens=200,
            temperature=0, response_format=rf, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        jsonschema.validate(json.loads(text), self.SCHEMAS[0])
        r = self.c.completions.create(model=self.s.model, prompt="The answer:", max_tokens=200,
                                      temperature=0, extra_body={"response_format": rf})
        jsonschema.validate(json.loads(r.choices[0].text), self.SCHEMAS[0])
        r = self.c.chat.completions.create(
            model=self.s.model, messages=[{"role": "user", "content": "JSON"}], max_tokens=200,
            temperature=0, response_format={"type": "json_object"})
        if r.choices[0].finish_reason == "stop":
            self.assertIsInstance(json.loads(r.choices[0].message.content), dict)
        else:  # cut by max_tokens: still the start of an object
            self.assertTrue(r.choices[0].message.content.startswith("{"))
        # What the grammar engine cannot do is refused with its name; malformed formats too.
        for bad, want in [
                ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
                    "type": "object", "if": {"type": "object"}}}}, "if"),
                ({"type": "json_schema", "json_schema": {"name": "x", "schema": {
                    "type": "array", "uniqueItems": True}}}, "uniqueItems"),
                ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema"),
                ({"type": "yaml"}, "response_format.type")]:
            with self.assertRaises(openai.BadRequestError, msg=str(bad)) as e:
                self.c.chat.completions.create(model=self.s.model, max_tokens=4,
                                               messages=[{"role": "user", "content": "x"}],
                                               response_format=bad)
            self.assertIn(want, e.exception.body["message"])

    def test_a_slow_reader_holds_up_no_one(self):
        """A streaming client that reads nothing (a 2 KB receive buffer; its stream, with 5 top
        log-probabilities a token, is ~47 KB) while another request runs: the other finishes
        with native's answer, and the slow client later reads its whole stream, in order."""
        import socket
        n = 120
        body = json.dumps({"model": self.s.model, "prompt": PROMPTS[1], "max_tokens": n,
                           "temperature": 0, "stream": True, "logprobs": 5}).encode()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.connect((self.s.host, self.s.port))
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(1)  # the slow stream is running and its events are piling up
        want = native(PROMPTS[0], 16)
        self.assertEqual(self.complete(PROMPTS[0]).choices[0].text, want["text"])
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        events = [line[len(b"data: "):] for line in data.split(b"\n") if line.startswith(b"data: ")]
        self.assertEqual(events[-1], b"[DONE]")
        text = "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]
                       if json.loads(e)["choices"])
        self.assertEqual(text, native(PROMPTS[1], n)["text"])

    def test_a_client_that_leaves_frees_the_engine(self):
        before = self.s.get("/health")[1]["cancelled"]
        stream = self.complete(PROMPTS[0], 200, stream=True)
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()
        deadline = time.time() + 30
        while True:
            h = self.s.get("/health")[1]
            if h["cancelled"] > before and h["running"] == 0:
                break
            self.assertLess(time.time(), deadline, f"the run went on: {h}")
            time.sleep(0.05)
        self.assertLess(h["last_cancelled_tokens"], 100, h)
        self.assertEqual(self.complete(PROMPTS[0], 2).usage.completion_tokens, 2)


class Queue(unittest.TestCase):
    def test_a_full_queue_answers_429(self):
        s = Server("--queue", "1", "--parallel", "1")
        try:
            results, messages = [], []

            def one():
                try:
                    s.client.completions.create(model=s.model, prompt=PROMPTS[0], max_tokens=200,
                                                temperature=0)
                    results.append("ok")
                except openai.RateLimitError as e:
                    results.append(429)
                    messages.append(e.body["message"])

            # The first request runs; the other four come while it does (200 tokens).
            first = threading.Thread(target=one)
            first.start()
            deadline = time.time() + 30
            while s.get("/health")[1]["running"] == 0:
                self.assertLess(time.time(), deadline)
                time.sleep(0.01)
            threads = [threading.Thread(target=one) for _ in range(4)]
            for t in threads:
                t.start()
            for t in [first, *threads]:
                t.join()
            # One runs, exactly one waits (--queue 1), three are turned away; the two finish.
            self.assertEqual(sorted(results, key=str), [429, 429, 429, "ok", "ok"])
            self.assertEqual(len(messages), 3)
            for m in messages:
                self.assertIn("1 requests are already waiting", m)
        finally:
            s.close()


class DeviceLost(unittest.TestCase):
    def test_a_lost_device_fails_its_request_and_the_server_goes_on(self):
        # `--lose-device-after-tokens 3` destroys the GPU device once, mid-generation (the
        # tests run on a GPU adapter: lavapipe where there is no GPU).
        s = Server("--lose-device-after-tokens", "3")
        try:
            want = native(PROMPTS[0], 8)
            with self.assertRaises(openai.APIStatusError) as e:
                s.client.completions.create(model=s.model, prompt=PROMPTS[0], max_tokens=8,
                                            temperature=0)
            self.assertEqual(e.exception.status_code, 503)
            self.assertIn("device was lost", str(e.exception))
            # The next request runs on a new device and gives the usual answer, streamed too.
            r = s.client.completions.create(model=s.model, prompt=PROMPTS[0], max_tokens=8,
                                            temperature=0)
            self.assertEqual(r.choices[0].text, want["text"])
            streamed = "".join(c.choices[0].text for c in s.client.completions.create(
                model=s.model, prompt=PROMPTS[0], max_tokens=8, temperature=0, stream=True))
            self.assertEqual(streamed, want["text"])
            status, body = s.get("/health")
            self.assertEqual((status, body["status"]), (200, "ok"))
            self.assertEqual(body["device_resets"], 1, body)
        finally:
            s.close()

    def test_a_lost_device_fails_the_requests_sharing_it(self):
        # Two requests decoding together when the device goes (after 6 steps): each fails
        # with a 503 naming the loss, or (if it had not joined yet) finishes with the usual
        # answer; none hangs or gets a wrong text, and both run whole afterwards.
        s = Server("--lose-device-after-tokens", "6", "--parallel", "2")
        try:
            want = {p: native(p, 24)["text"] for p in PROMPTS[:2]}
            got = {}

            def one(p):
                try:
                    got[p] = s.client.completions.create(
                        model=s.model, prompt=p, max_tokens=24, temperature=0).choices[0].text
                except openai.APIStatusError as e:
                    got[p] = (e.status_code, "device was lost" in str(e))

            threads = [threading.Thread(target=one, args=(p,)) for p in PROMPTS[:2]]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertIn((503, True), got.values(), got)
            for p, g in got.items():
                self.assertIn(g, [(503, True), want[p]], p)
            for p in PROMPTS[:2]:
                r = s.client.completions.create(model=s.model, prompt=p, max_tokens=24,
                                                temperature=0)
                self.assertEqual(r.choices[0].text, want[p])
            self.assertEqual(s.get("/health")[1]["device_resets"], 1)
        finally:
            s.close()


class Access(unittest.TestCase):
    """--api-key (and --api-key-file), --cors and --max-tokens, as clients meet them."""

    def test_keys_cors_and_caps(self):
        s = Server("--backend", "cpu", "--api-key", "k-123", "--cors", "http://example.org",
                   "--max-tokens", "8")
        try:
            with self.assertRaises(openai.AuthenticationError) as e:
                s.client.models.list()  # the client's key is "none"
            self.assertEqual(e.exception.body["code"], "invalid_api_key")
            good = openai.OpenAI(base_url=s.url + "v1", api_key="k-123", max_retries=0)
            self.assertEqual(good.models.list().data[0].id, "tide-k4")
            bad = openai.OpenAI(base_url=s.url + "v1", api_key="k-124", max_retries=0)
            with self.assertRaises(openai.AuthenticationError):
                bad.completions.create(model="tide-k4", prompt="x", max_tokens=1)
            self.assertEqual(s.request("GET", "/metrics")[0], 401)
            self.assertEqual(s.request("GET", "/health")[0], 200)  # for load balancers
            s.metrics({"Authorization": "Bearer k-123"})
            # max_tokens over the cap: 400 naming it; at the cap: runs.
            with self.assertRaises(openai.BadRequestError) as e:
                good.completions.create(model="tide-k4", prompt="x", max_tokens=9)
            self.assertIn("limit of 8", e.exception.body["message"])
            r = good.completions.create(model="tide-k4", prompt="x", max_tokens=8, temperature=0)
            self.assertEqual(r.usage.completion_tokens, 8)
            # Not asked: OpenAI's 16 for completions, within the cap (no 400 for a field the
            # client never sent).
            r = good.completions.create(model="tide-k4", prompt="x", temperature=0)
            self.assertEqual(r.usage.completion_tokens, 8)
            # CORS: the named origin's preflight and reply carry it, another origin's do not.
            for origin, allowed in [("http://example.org", True), ("http://other.org", False)]:
                c = http.client.HTTPConnection(s.host, s.port, timeout=30)
                c.request("OPTIONS", "/v1/chat/completions", headers={
                    "Origin": origin, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os"})
                r = c.getresponse()
                r.read()
                got = r.getheader("access-control-allow-origin")
                self.assertEqual(got, origin if allowed else None, origin)
                if allowed:
                    # What the page's client sends (openai-node adds x-stainless-* headers).
                    allowed_headers = r.getheader("access-control-allow-headers")
                    self.assertIn("authorization", allowed_headers)
                    self.assertIn("x-stainless-os", allowed_headers)
                c.close()
        finally:
            s.close()

    def test_a_key_file(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".key") as f:
            f.write("from-a-file\n")
            f.flush()
            s = Server("--backend", "cpu", "--api-key-file", f.name)
            try:
                self.assertEqual(s.request("GET", "/v1/models")[0], 401)
                ok = s.request("GET", "/v1/models", headers={"Authorization": "Bearer from-a-file"})
                self.assertEqual(ok[0], 200)
            finally:
                s.close()


class FastCpu(unittest.TestCase):
    def test_the_fast_cpu_backend_serves_native_greedy_text(self):
        s = Server("--backend", "cpu")
        try:
            for p in PROMPTS[:2]:
                want = native(p, 12, backend="cpu")
                r = s.client.completions.create(model=s.model, prompt=p, max_tokens=12,
                                                temperature=0)
                self.assertEqual(r.choices[0].text, want["text"], p)
        finally:
            s.close()


if __name__ == "__main__":
    unittest.main(verbosity=2, argv=[sys.argv[0]])
