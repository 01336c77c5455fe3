"""What the API benchmarks share (scripts/bench_schema.py, scripts/bench_prefix_cache.py): a
`tide serve` on a free port, one slot, waited for until its model has loaded; a streamed chat
request's chunks with the time each arrived; the JSON lines of a run and its summary."""
import http.client
import json
import subprocess
import time


class Server:
    def __init__(self, tide, model, backend, *extra):
        self.p = subprocess.Popen([tide, "serve", "--port", "0", "--model", model, "--backend",
                                   backend, "--parallel", "1", "--web", "web", *extra],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = self.p.stdout.readline().strip()
        self.host, port = url[len("http://"):].rstrip("/").split(":")
        self.port = int(port)
        deadline = time.time() + 300
        while True:
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=10)
                c.request("GET", "/health")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.time() < deadline, "the model did not load"
            time.sleep(0.2)
        c = http.client.HTTPConnection(self.host, self.port, timeout=10)
        c.request("GET", "/v1/models")
        self.model = json.loads(c.getresponse().read())["data"][0]["id"]

    def stream(self, body):
        """POST `body` (a chat request; model, stream and usage are added) and read its SSE
        stream: (when it was sent, [(when it arrived, chunk), ...]), perf_counter seconds."""
        body = {**body, "model": self.model, "stream": True,
                "stream_options": {"include_usage": True}}
        c = http.client.HTTPConnection(self.host, self.port, timeout=600)
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", json.dumps(body),
                  {"Content-Type": "application/json"})
        chunks = []
        for line in c.getresponse():
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append((time.perf_counter(), json.loads(line[len("data: "):])))
        return t0, chunks

    def close(self):
        self.p.terminate()
        self.p.wait(10)


def content(chunks):
    """The content pieces of a stream's chunks: [(when, text), ...]; and its usage."""
    pieces, usage = [], None
    for t, chunk in chunks:
        usage = chunk.get("usage") or usage
        for ch in chunk.get("choices", []):
            piece = ch.get("delta", {}).get("content")
            if piece:
                pieces.append((t, piece))
    return pieces, usage


def write_run(path, rows, summary):
    """Print the summary, and write every row and then it to `path` as JSON lines."""
    print(json.dumps(summary))
    with open(path, "w") as f:
        for r in rows + [summary]:
            f.write(json.dumps(r) + "\n")
