#!/usr/bin/env python3
"""`smallthinker serve` end to end: real server processes on free loopback
ports, the Python gRPC example client (stubs generated now by
grpc_tools.protoc) and curl. Needs ST_CLI (the smallthinker binary) and
ST_SOURCE_DIR (the repository) in the environment."""
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SOURCE_DIR = os.environ.get("ST_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("ST_CLI", os.path.join(SOURCE_DIR, "build", "tools", "smallthinker"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "examples", "python"))
import client as st_client  # noqa: E402
import grpc  # noqa: E402

TMP = tempfile.TemporaryDirectory(prefix="serve_test_")
MODEL = os.path.join(TMP.name, "tiny.gguf")


class Server:
    """One `smallthinker serve` process; ports parsed from its stdout."""

    def __init__(self, *args, env=None, wait_ready=True, model=None):
        cmd = [CLI, "serve", "-m", model or MODEL, "--grpc-listen", "127.0.0.1:0", "--http-listen",
               "127.0.0.1:0", "-t", "2", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env={**os.environ, **(env or {})})
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.grpc_port = int(self.expect("grpc listening on").rsplit(":", 1)[1])
        self.http_port = int(self.expect("http listening on").rsplit(":", 1)[1])
        self.target = f"127.0.0.1:{self.grpc_port}"
        if wait_ready:
            self.expect("ready:")

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def expect(self, prefix, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}")
                continue
            if line.startswith(prefix):
                return line
        raise TimeoutError(f"no '{prefix}' line from the server")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        assert rc == 0, f"server exit code {rc}"


def metrics(port):
    """GET /metrics as {name: float}."""
    code, text = curl(port, "/metrics")
    assert code == 200, text
    return {k: float(v) for k, v in (line.split(" ") for line in text.splitlines()
                                      if not line.startswith("#"))}


def start_worker(model):
    """A `smallthinker worker` process and its host:port (from its stdout)."""
    proc = subprocess.Popen([CLI, "worker", "-m", model, "--listen", "127.0.0.1:0", "-t", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"worker did not start: '{line}'")
    return proc, line.split(" ", 1)[1]


def curl(port, path, body=None, headers=(), stream=False, max_time=60, json_type=True,
         dump_headers=None):
    """(HTTP status, body text) via the curl command line. json_type False
    sends the body as `curl -d` does (application/x-www-form-urlencoded);
    dump_headers names a file for the response headers."""
    cmd = ["curl", "-sS", "--max-time", str(max_time), "-o", "-", "-w", "\n%{http_code}"]
    if dump_headers:
        cmd += ["-D", dump_headers]
    if stream:
        cmd.append("-N")
    for h in headers:
        cmd += ["-H", h]
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        if json_type:
            cmd += ["-H", "Content-Type: application/json"]
        cmd += ["--data-binary", "@-"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, input=data, capture_output=True, timeout=max_time + 10).stdout.decode()
    text, _, code = out.rpartition("\n")
    return int(code), text


def raw_http(port, parts, idle=2, await_reply=False):
    """Sends `parts` on one connection, 0.2 s apart (with await_reply: part i
    once i responses have begun), then reads until the connection closes or
    idles `idle` s: every response byte."""
    sock = socket.create_connection(("127.0.0.1", port))
    got = b""
    for i, part in enumerate(parts):
        if i and await_reply:
            sock.settimeout(60)
            while got.count(b"\r\n\r\n") < i:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                got += chunk
        elif i:
            time.sleep(0.2)
        sock.sendall(part)
    sock.settimeout(idle)
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    sock.close()
    return got


def response_headers(port, path, method="GET", headers=(), data=None):
    """(HTTP status, {lower-case header: value}) of a request."""
    cmd = ["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-D", "-", "-X", method]
    for h in headers:
        cmd += ["-H", h]
    if data is not None:
        cmd += ["--data-binary", data]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    lines = subprocess.run(cmd, capture_output=True, timeout=40).stdout.decode().splitlines()
    fields = dict(l.split(":", 1) for l in lines[1:] if ":" in l)
    return int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, v in fields.items()}


def http_post(port, path, body, api_key):
    """A POST on a raw socket (left open, nothing read), for tests that hang up."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {api_key}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def packed_copy():
    """A copy of MODEL with its expert pack beside it (made once)."""
    d = os.path.join(TMP.name, "packed")
    model = os.path.join(d, "tiny.gguf")
    if not os.path.exists(model + ".stpack"):
        os.makedirs(d, exist_ok=True)
        subprocess.run(["cp", MODEL, model], check=True)
        subprocess.run([CLI, "convert", model], check=True, capture_output=True)
    return model


def stats_when(cond, seconds):
    """CS.stats() once cond(stats) holds, or the last one after `seconds`."""
    deadline = time.time() + seconds
    while True:
        st = CS.stats()
        if cond(st) or time.time() > deadline:
            return st
        time.sleep(0.005)


def sse_events(text):
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]


def drain(stream):
    text, ids, last, n = "", [], None, 0
    for r in stream:
        text += r.text
        ids += list(r.token_ids)
        last = r
        n += 1
    return text, ids, last, n


def setUpModule():
    subprocess.run([CLI, "synth", "--preset", "tiny", "--type", "q8_0", "--out", MODEL],
                   check=True, capture_output=True)
    global MAIN, SMALL, C, CS
    MAIN = Server("--parallel", "8", "--queue", "8", "--ctx", "256")
    SMALL = Server("--parallel", "1", "--queue", "1", "--ctx", "4096", "--api-key", "sesame",
                   "--cors-origin", "http://localhost:3000")
    C = st_client.Client(MAIN.target)
    CS = st_client.Client(SMALL.target, api_key="sesame")


def tearDownModule():
    MAIN.stop()
    SMALL.stop()
    TMP.cleanup()


class ServeTest(unittest.TestCase):
    def test_health_serving_only_after_load(self):
        s = Server(env={"ST_SERVE_TEST_LOAD_DELAY_MS": "1500"}, wait_ready=False)
        try:
            c = st_client.Client(s.target)
            self.assertEqual(c.health(), "NOT_SERVING")
            self.assertEqual(curl(s.http_port, "/health")[0], 503)
            with self.assertRaises(grpc.RpcError) as e:
                c.info()
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
            s.expect("ready:")
            self.assertEqual(c.health(), "SERVING")
            self.assertEqual(c.health("smallthinker.v1.InferenceService"), "SERVING")
            self.assertEqual(curl(s.http_port, "/health"), (200, '{"status":"ok"}'))
        finally:
            s.stop()

    def test_a_signal_while_loading_exits_at_once(self):
        s = Server(env={"ST_SERVE_TEST_LOAD_DELAY_MS": "20000"}, wait_ready=False)
        time.sleep(0.3)
        start = time.time()
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.proc.wait(timeout=10), -signal.SIGTERM)  # died of it
        self.assertLess(time.time() - start, 5)  # not after the 20 s load
        s.proc.stdout.close()

    def test_sigterm_finishes_replies_in_flight_and_drops_idle_connections(self):
        # cpp-httplib 0.11.4 kept an idle kept-alive connection for its 5 s
        # keep-alive timeout after stop() (serve took ~4-5 s to exit while a
        # client held one); shutting down every connection's read side
        # instead cut replies still being read or written (session 35's
        # revert). Now the idle connection is closed at once, and every
        # request in flight gets its whole reply: streams the error event,
        # [DONE] and the last chunk; a whole reply and a request whose body
        # was still arriving, a complete 503.
        s = Server("--parallel", "4", "--ctx", "8192")
        idle = socket.create_connection(("127.0.0.1", s.http_port))
        socks = []
        try:
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            idle.settimeout(30)
            got = b""
            while not got.endswith(b'{"status":"ok"}'):
                chunk = idle.recv(4096)
                self.assertTrue(chunk, got)
                got += chunk
            body = {"prompt": "x", "max_tokens": 8000, "ignore_eos": True}
            streams = [http_post(s.http_port, "/v1/completions", {**body, "stream": True}, "-")
                       for _ in range(3)]
            whole = http_post(s.http_port, "/v1/completions", body, "-")
            # Headers and half of the body now, the rest after the signal.
            data = json.dumps({**body, "max_tokens": 4}).encode()
            upload = socket.create_connection(("127.0.0.1", s.http_port))
            upload.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\n\r\n" % len(data) +
                           data[:5])
            socks = [*streams, whole, upload]
            replies = {sock: b"" for sock in socks}
            for sock in streams:  # each stream is generating
                sock.settimeout(30)
                while b"data: " not in replies[sock]:
                    chunk = sock.recv(4096)
                    self.assertTrue(chunk, replies[sock])
                    replies[sock] += chunk
            # Past ShutdownIdleConnectionReads's quiet period (250 ms): only
            # the busy marks keep these connections' read side open.
            time.sleep(0.5)
            start = time.time()
            s.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            upload.sendall(data[5:])
            self.assertEqual(s.proc.wait(timeout=30), 0)
            s.proc.stdout.close()
            self.assertLess(time.time() - start, 4)  # not the 5 s keep-alive
            for sock in socks:
                sock.settimeout(10)
                while chunk := sock.recv(65536):
                    replies[sock] += chunk
            for sock in streams:
                r = replies[sock]
                self.assertIn(b"shutting down", r)
                self.assertTrue(r.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"), r[-200:])
            for sock in (whole, upload):
                head, _, payload = replies[sock].partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 503"), head)
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                self.assertEqual(len(payload), length)
                self.assertIn(b"shutting down", payload)
            self.assertEqual(idle.recv(4096), b"")  # the server closed it
        finally:
            idle.close()
            for sock in socks:
                sock.close()

    def test_grpc_port_in_use_is_refused(self):
        # gRPC's default SO_REUSEPORT had let a second server share MAIN's port.
        r = subprocess.run([CLI, "serve", "-m", MODEL, "--grpc-listen", MAIN.target,
                            "--http-listen", "127.0.0.1:0", "-t", "1"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("cannot listen", r.stderr)

    def test_stream_order_and_content(self):
        prompt = [72, 101, 108, 108, 111]  # "Hello" in the byte-level vocabulary
        responses = list(C.generate(prompt, max_tokens=16, temperature=0, ignore_eos=True))
        self.assertGreater(len(responses), 2)
        for r in responses[:-1]:
            self.assertEqual(r.finish_reason, 0)
            self.assertFalse(r.HasField("usage"))
        last = responses[-1]
        self.assertEqual(C.pb.FinishReason.Name(last.finish_reason), "FINISH_REASON_LENGTH")
        self.assertEqual(last.usage.completion_tokens, 16)
        self.assertEqual(last.usage.prompt_tokens, 5)
        self.assertGreater(last.usage.time_to_first_token_seconds, 0)
        ids = [i for r in responses for i in r.token_ids]
        text = "".join(r.text for r in responses)
        self.assertEqual(len(ids), 16)
        # (Ids from 256 of the tiny byte-level vocabulary are control
        # tokens: generated text shows nothing of them, Detokenize does.)
        self.assertEqual(text, C.detokenize([i for i in ids if i < 256]))
        # The same generation as `smallthinker run` (one process, no batching).
        run = subprocess.run([CLI, "run", "-m", MODEL, "-p", "Hello", "--temp", "0", "-n", "16",
                              "--ignore-eos", "--json", "-t", "2"], capture_output=True, check=True)
        solo = json.loads(run.stdout)
        self.assertEqual(ids, solo["generated_ids"])
        self.assertEqual(text, solo["text"])
        # And over HTTP as server-sent events.
        code, body = curl(MAIN.http_port, "/v1/completions", {
            "prompt": prompt, "max_tokens": 16, "temperature": 0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}, stream=True)
        self.assertEqual(code, 200)
        events = sse_events(body)
        self.assertEqual(events[-1], "[DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks if c["choices"]), text)
        self.assertEqual(chunks[-2]["choices"][0]["finish_reason"], "length")
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 16)
        for c in chunks[:-2]:
            self.assertIsNone(c["choices"][0]["finish_reason"])
        # An HTTP/1.0 client (nginx's default to upstreams) gets the same
        # events without chunked encoding, then the connection closes.
        body = json.dumps({"prompt": prompt, "max_tokens": 16, "temperature": 0,
                           "ignore_eos": True, "stream": True}).encode()
        got = raw_http(MAIN.http_port, [
            b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body], idle=30)
        head, _, sse = got.partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        self.assertNotIn(b"chunked", head.lower())
        self.assertIn(b"connection: close", head.lower())
        events = sse_events(sse.decode())
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual("".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]), text)
        # Asking for keep-alive changes nothing: the connection ends with the
        # events (httplib had kept it open until its 5 s keep-alive timeout).
        sock = socket.create_connection(("127.0.0.1", MAIN.http_port))
        sock.sendall(b"POST /v1/completions HTTP/1.0\r\nConnection: Keep-Alive\r\n"
                     b"Content-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        sock.settimeout(30)
        start, got = time.time(), b""
        while chunk := sock.recv(65536):
            got += chunk
        sock.close()
        self.assertLess(time.time() - start, 3, got)
        self.assertEqual(sse_events(got.partition(b"\r\n\r\n")[2].decode())[-1], "[DONE]")

    def test_eight_concurrent_greedy_requests_equal_solo(self):
        prompts = [f"Request number {i}: " + "abc" * i for i in range(8)]
        kw = dict(max_tokens=48, temperature=0, ignore_eos=True)
        solo = [drain(C.generate(p, **kw))[:2] for p in prompts]
        before = C.stats()
        results = [None] * 8
        start = threading.Barrier(8)

        def run(i):
            start.wait()  # send the eight requests together
            results[i] = drain(C.generate(prompts[i], **kw))[:2]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = C.stats()
        for i in range(8):
            self.assertEqual(results[i], solo[i], f"request {i}")
        tokens = after.tokens_predicted_total - before.tokens_predicted_total
        steps = after.steps_total - before.steps_total
        self.assertEqual(tokens, 8 * 48)
        # Batched: fewer steps than tokens. Not tokens / 2: on a loaded
        # machine (CI shares its 2 cores) the threads' requests arrive
        # spread out, and the first ones run alone for a few steps (146 of
        # 192 tokens once, with 24 tokens each and no start barrier: a tiny
        # model's step is far shorter than a thread's start).
        self.assertLess(steps, tokens * 3 / 4, "requests were not batched")

    def test_chat_over_grpc_and_http_agree(self):
        messages = [("system", "Be brief."), ("user", "Hi there")]
        text, ids, last, _ = drain(C.chat(messages, max_tokens=12, temperature=0, ignore_eos=True))
        code, body = curl(MAIN.http_port, "/v1/chat/completions", {
            "messages": [{"role": r, "content": c} for r, c in messages], "max_tokens": 12,
            "temperature": 0, "ignore_eos": True})
        self.assertEqual(code, 200, body)
        reply = json.loads(body)
        self.assertEqual(reply["object"], "chat.completion")
        self.assertEqual(reply["choices"][0]["message"],
                         {"role": "assistant", "content": text, "refusal": None})
        self.assertIsNone(reply["choices"][0]["logprobs"])
        self.assertEqual(reply["usage"]["completion_tokens"], 12)
        self.assertEqual(reply["usage"]["prompt_tokens"], last.usage.prompt_tokens)
        # A message that mentions the control tokens is answered (it was
        # refused with 400): its text is text, on both doors alike.
        messages = [("user", "What do <|im_start|> and <|im_end|> mark?")]
        text, _, last, _ = drain(C.chat(messages, max_tokens=4, temperature=0, ignore_eos=True))
        code, body = curl(MAIN.http_port, "/v1/chat/completions", {
            "messages": [{"role": r, "content": c} for r, c in messages], "max_tokens": 4,
            "temperature": 0, "ignore_eos": True})
        self.assertEqual(code, 200, body)
        reply = json.loads(body)
        self.assertEqual(reply["choices"][0]["message"]["content"], text)
        self.assertEqual(reply["usage"]["prompt_tokens"], last.usage.prompt_tokens)
        self.assertGreater(last.usage.prompt_tokens, 20)  # the markers as text, not 2 tokens

    def test_cancelling_mid_stream_frees_the_slot(self):
        call = CS.generate("Tell me everything", max_tokens=3000, ignore_eos=True)
        it = iter(call)
        next(it)
        next(it)
        call.cancel()
        # The single slot is free again: a new request completes promptly.
        start = time.time()
        _, ids, last, _ = drain(CS.generate("next", max_tokens=4, ignore_eos=True, temperature=0))
        self.assertEqual(len(ids), 4)
        self.assertLess(time.time() - start, 20)
        # An HTTP client that disconnects mid-stream frees its slot too: it
        # reads the first event, then closes. (A curl --max-time of 1 s did
        # not test this on a fast host: the tiny model streams all the
        # tokens in less than that.)
        before = CS.stats()
        sock = http_post(SMALL.http_port, "/v1/completions",
                         {"prompt": "x", "max_tokens": 4000, "stream": True, "ignore_eos": True},
                         "sesame")
        got = b""
        while b"data: " not in got:
            chunk = sock.recv(4096)
            self.assertTrue(chunk)
            got += chunk
        sock.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:100])
        st = stats_when(lambda st: st.requests_processing == 0, 5)
        self.assertEqual(st.requests_processing, 0)
        self.assertEqual(st.kv_cache_bytes, 0)
        self.assertLess(st.tokens_predicted_total - before.tokens_predicted_total, 4000)
        _, ids, _, _ = drain(CS.generate("again", max_tokens=3, ignore_eos=True))
        self.assertEqual(len(ids), 3)

    def test_streaming_client_that_leaves_while_queued_never_runs(self):
        # A streaming request writes nothing while it waits for the only
        # slot, so only its socket can say the client left: it is cancelled
        # in the queue and generates nothing once the slot frees.
        # What earlier tests cancelled has ended.
        before = stats_when(lambda st: st.requests_processing == 0 and st.requests_deferred == 0, 2)
        a = CS.generate("first", max_tokens=4000, ignore_eos=True)
        it = iter(a)
        first = next(it)  # generating: holds the only slot
        sock = http_post(SMALL.http_port, "/v1/completions",
                         {"prompt": "x", "max_tokens": 50, "stream": True, "ignore_eos": True},
                         "sesame")
        self.assertEqual(stats_when(lambda st: st.requests_deferred == 1, 1).requests_deferred, 1)
        # The client reads what it got (the response head) and closes: a FIN,
        # not the reset that unread bytes would cause.
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = sock.recv(4096)
            self.assertTrue(chunk)
            got += chunk
        self.assertTrue(got.startswith(b"HTTP/1.1 200"), got[:100])
        sock.close()
        # Cancelled in the queue while the first request still holds the slot
        # (it has not produced its 4000 tokens yet).
        st = stats_when(lambda st: st.requests_deferred == 0, 2)
        self.assertEqual(st.requests_deferred, 0)
        self.assertLess(st.tokens_predicted_total - before.tokens_predicted_total, 4000)
        n_a = len(first.token_ids) + sum(len(r.token_ids) for r in it)
        st = stats_when(lambda st: st.requests_processing == 0 and st.requests_deferred == 0, 5)
        self.assertEqual((st.requests_processing, st.requests_deferred), (0, 0))
        self.assertEqual(st.tokens_predicted_total - before.tokens_predicted_total, n_a)

    def test_full_queue_is_rejected(self):
        # 4000 tokens (~0.8 s for the tiny model on a fast host) hold the only
        # slot while the checks below run.
        a = CS.generate("first", max_tokens=4000, ignore_eos=True)
        next(iter(a))  # generating: holds the only slot
        b = CS.generate("second", max_tokens=4000, ignore_eos=True)  # waits in the queue
        for _ in range(200):
            if CS.stats().requests_deferred == 1:
                break
            time.sleep(0.02)
        self.assertEqual(CS.stats().requests_deferred, 1)
        with self.assertRaises(grpc.RpcError) as e:
            drain(CS.generate("third", max_tokens=2))
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        with tempfile.NamedTemporaryFile("r") as dumped:
            code, body = curl(SMALL.http_port, "/v1/completions", {"prompt": "x", "max_tokens": 2},
                              headers=["Authorization: Bearer sesame"], dump_headers=dumped.name)
            head = dumped.read().lower()
        self.assertEqual(code, 429, body)
        self.assertEqual(json.loads(body)["error"]["type"], "rate_limit_error")
        self.assertIn("retry-after: 1", head)  # the SDKs retry after it

        a.cancel()
        b.cancel()

    def assert_serve_refuses(self, args, message, model=None):
        out = subprocess.run([CLI, "serve", "-m", model or MODEL, "--grpc-listen", "127.0.0.1:0",
                              "--http-listen", "127.0.0.1:0", "-t", "1", *args],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertNotIn("ready:", out.stdout)
        self.assertIn(message, out.stderr)

    def test_kv_budget_below_one_request_refuses_to_start(self):
        self.assert_serve_refuses(["--ctx", "512", "--kv-budget", "1KiB"],
                                  "holds no request of the default context (512 tokens")

    def test_kv_budget_over_the_memory_plan_is_refused(self):
        # --memory-budget plans KV caches for the requests that can run at
        # once; a larger --kv-budget would let the process outgrow the budget.
        self.assert_serve_refuses(["--ctx", "256", "--memory-budget", "1GiB", "--kv-budget", "64GiB"],
                                  "is more than --memory-budget leaves for KV caches",
                                  model=packed_copy())

    def test_a_flood_of_health_watches_is_capped(self):
        # Each Watch holds a server thread: at most 32 stay open, the rest
        # are refused, and generation still gets threads meanwhile.
        channel = grpc.insecure_channel(SMALL.target)
        watch = channel.unary_stream("/grpc.health.v1.Health/Watch")
        calls = [watch(b"") for _ in range(300)]
        refused = 0
        for c in calls:
            try:
                next(c)  # the first status, or the refusal
            except grpc.RpcError as e:
                self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e)
                refused += 1
        with open(f"/proc/{SMALL.proc.pid}/status") as f:
            threads = int(next(l for l in f if l.startswith("Threads:")).split()[1])
        self.assertGreaterEqual(refused, 300 - 32)
        self.assertLess(threads, 300)
        _, ids, _, _ = drain(CS.generate("still serving", max_tokens=2, ignore_eos=True))
        self.assertEqual(len(ids), 2)
        for c in calls:
            c.cancel()
        channel.close()

    def test_bad_http_input_is_400_and_the_server_keeps_serving(self):
        cases = [
            ({"prompt": list(range(65, 91)) * 10, "max_tokens": 4}, "does not fit the context"),
            (b'{"prompt": "bad \xff\xfe utf-8"}', "JSON"),
            ({"messages": [{"role": "", "content": "x"}]}, "role"),
            ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
            ({"messages": []}, "messages"),
            ('{"prompt": "x",', "JSON"),
            ("[1, 2]", "object"),
            ({"prompt": "x", "temperature": "hot"}, "temperature"),
            ({"prompt": "x", "max_tokens": "many"}, "max_tokens"),
            ({"prompt": "x", "max_tokens": -3}, "max_tokens"),
            ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
            ({"prompt": "x", "top_p": 1.5}, "top_p"),
            ({"prompt": "x", "echo": True}, "echo"),
            ({"messages": [{"role": "user", "content": "x"}],
              "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
            ({"messages": [{"role": "user", "content": "x"}],
              "response_format": {"type": "json_object"}}, "response_format"),
            ({"messages": [{"role": "user", "content": "x"}], "logprobs": True}, "logprobs"),
            ({"prompt": "x", "stop": [1]}, "stop"),
            ({"prompt": "x", "stream": "yes"}, "stream"),
            ({"prompt": "x", "n": 2}, "n = 1"),
            ({"prompt": ""}, "empty"),
            ({"messages": "hello"}, "messages"),
            ({"prompt": [999999]}, "out of range"),
        ]
        for body, needle in cases:
            path = "/v1/chat/completions" if b"messages" in (
                body if isinstance(body, bytes) else json.dumps(body).encode() if not isinstance(body, str)
                else body.encode()) else "/v1/completions"
            code, text = curl(MAIN.http_port, path, body)
            self.assertEqual(code, 400, (body, text))
            err = json.loads(text)["error"]
            self.assertEqual(err["type"], "invalid_request_error")
            self.assertIn(needle, err["message"], body)
            if needle == "does not fit the context":  # OpenAI's code, for clients that trim history
                self.assertEqual(err["code"], "context_length_exceeded")
        code, text = curl(MAIN.http_port, "/v1/completions", b'{"prompt": "' + b"a" * (9 << 20) + b'"}')
        self.assertEqual(code, 413, text)
        self.assertIn("error", json.loads(text))
        self.assertEqual(curl(MAIN.http_port, "/v1/nothing")[0], 404)
        # Known paths with the wrong method: 405 naming the right one.
        code, text = curl(MAIN.http_port, "/v1/chat/completions")
        self.assertEqual(code, 405, text)
        self.assertIn("use POST", json.loads(text)["error"]["message"])
        self.assertEqual(response_headers(MAIN.http_port, "/v1/models", method="POST",
                                          data="{}")[1].get("allow"), "GET")
        # JSON nested past 64 levels is refused, not followed down the stack
        # (300,000 levels once crashed the server).
        deep = b'{"prompt": "x", "response_format": {"type": ' + b"[" * 300000 + b"]" * 300000 + b"}}"
        code, text = curl(MAIN.http_port, "/v1/completions", deep)
        self.assertEqual(code, 400, text)
        self.assertIn("deeper than 64", json.loads(text)["error"]["message"])
        self.assertEqual(curl(MAIN.http_port, "/health")[0], 200)
        code, text = curl(MAIN.http_port, "/v1/completions", {"prompt": "ok", "max_tokens": 2})
        self.assertEqual(code, 200, text)

    def test_bad_grpc_input_is_invalid_argument(self):
        bad = [
            lambda: C.generate(list(range(65, 91)) * 10, max_tokens=4),  # longer than --ctx 256
            lambda: C.generate([10 ** 6], max_tokens=4),
            lambda: C.generate("", max_tokens=4),
            lambda: C.generate("x", temperature=-1.0),
            lambda: C.generate("x", context_size=100000),
            lambda: C.generate("x", stop=["s"] * 17),
            lambda: C.chat([("wizard", "hi")]),
            lambda: C.chat([("", "hi")]),
            lambda: C.chat([]),
        ]
        for i, make in enumerate(bad):
            with self.assertRaises(grpc.RpcError, msg=f"case {i}") as e:
                drain(make())
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, f"case {i}")
        self.assertEqual(len(drain(C.generate("fine", max_tokens=2, ignore_eos=True))[1]), 2)

    def test_api_key(self):
        self.assertEqual(curl(SMALL.http_port, "/v1/models")[0], 401)
        self.assertEqual(curl(SMALL.http_port, "/v1/models", headers=["Authorization: Bearer nope"])[0], 401)
        code, body = curl(SMALL.http_port, "/v1/models", headers=["Authorization: Bearer sesame"])
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["data"][0]["id"], "tiny")
        # The scheme in any case, the X-Api-Key header, and /models for base
        # URLs without /v1.
        self.assertEqual(curl(SMALL.http_port, "/v1/models", headers=["Authorization: bearer sesame"])[0], 200)
        self.assertEqual(curl(SMALL.http_port, "/models", headers=["X-Api-Key: sesame"])[0], 200)
        self.assertEqual(curl(SMALL.http_port, "/models", headers=["X-Api-Key: nope"])[0], 401)
        self.assertEqual(curl(SMALL.http_port, "/health")[0], 200)
        self.assertEqual(curl(SMALL.http_port, "/v1/health")[0], 200)
        # /metrics tells who used the server how much: the key, as in llama-server.
        self.assertEqual(curl(SMALL.http_port, "/metrics")[0], 401)
        code, text = curl(SMALL.http_port, "/metrics", headers=["Authorization: Bearer sesame"])
        self.assertEqual(code, 200)
        self.assertIn("llamacpp:tokens_predicted_total", text)
        # A request refused for its key is refused after its body is read:
        # refused before, its body (sent here in a later packet) was read as
        # the next request on the kept-alive connection (here a GET).
        smuggled = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        got = raw_http(SMALL.http_port, [
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(smuggled),
            smuggled])  # then the connection idles (kept alive)
        self.assertTrue(got.startswith(b"HTTP/1.1 401"), got)
        self.assertEqual(got.count(b"HTTP/1.1 "), 1, got)
        # The same as multipart/form-data that is not well-formed (httplib's
        # form parser stopped at its first byte and left the rest).
        got = raw_http(SMALL.http_port, [
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n"
            % len(smuggled), smuggled])
        self.assertTrue(got.startswith(b"HTTP/1.1 401"), got)
        self.assertEqual(got.count(b"HTTP/1.1 "), 1, got)
        # A chunked body over the 8 MiB limit is read to its end: 413, then
        # the next request on the connection gets its own answer (reading
        # had stopped at the limit, and the rest was parsed as requests).
        # (The next request only once the answer began: cpp-httplib 0.11
        # drops bytes of a next request that came in with the previous one.)
        chunk = b"a" * (1 << 20)
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(9)) + b"0\r\n\r\n"
        got = raw_http(SMALL.http_port, [
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + body,
            smuggled], await_reply=True)
        self.assertTrue(got.startswith(b"HTTP/1.1 413"), got[:300])
        self.assertEqual(got.count(b"HTTP/1.1 "), 2, got[:600])
        self.assertIn(b"HTTP/1.1 200", got, got[:600])
        # A well-formed multipart body with the right key: 400 saying why,
        # and the next request is answered.
        form = b'--x\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhi\r\n--x--\r\n'
        got = raw_http(SMALL.http_port, [
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n"
            % len(form) + form, smuggled], await_reply=True)
        self.assertTrue(got.startswith(b"HTTP/1.1 400"), got)
        self.assertIn(b"multipart", got)
        self.assertEqual(got.count(b"HTTP/1.1 "), 2, got)
        self.assertIn(b"HTTP/1.1 200", got, got)
        with self.assertRaises(grpc.RpcError) as e:
            st_client.Client(SMALL.target).info()
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(CS.info().id, "tiny")

    def test_tokenizer_info_and_metrics(self):
        self.assertEqual(C.tokenize("hi"), [104, 105])
        self.assertEqual(C.tokenize("hi<|im_end|>", parse_special=True), [104, 105, 258])
        self.assertEqual(C.detokenize([104, 105]), "hi")
        info = C.info()
        self.assertEqual((info.n_layers, info.parallel, info.queue_capacity, info.server_context_size),
                         (4, 8, 8, 256))
        drain(C.generate("count me", max_tokens=3, ignore_eos=True))
        code, text = curl(MAIN.http_port, "/metrics")
        self.assertEqual(code, 200)
        metrics = dict(line.split(" ") for line in text.splitlines() if not line.startswith("#"))
        for name in ["llamacpp:prompt_tokens_total", "llamacpp:tokens_predicted_total",
                     "llamacpp:requests_processing", "llamacpp:requests_deferred"]:
            self.assertIn(name, metrics)
        self.assertGreaterEqual(float(metrics["llamacpp:tokens_predicted_total"]), 3)

    def test_stats_report_the_expert_cache(self):
        # A copy of the model with its expert pack beside it: experts run
        # through the expert cache, whose counters GetStats and /metrics show.
        model = packed_copy()
        args = ["--parallel", "2", "--ctx", "256", "--no-stats"]
        self.assertFalse(C.stats().HasField("expert_cache"))  # MAIN runs from the GGUF

        # No budget: every expert is read into the cache at start (not counted).
        s = Server(*args, model=model)
        try:
            c = st_client.Client(s.target)
            before = c.stats().expert_cache
            self.assertEqual(before.slots, 32)  # 4 layers x 8 experts
            self.assertEqual(before.resident, 32)
            _, ids, _, _ = drain(c.generate("cache me", max_tokens=5, ignore_eos=True, temperature=0))
            self.assertEqual(len(ids), 5)
            stats = c.stats()
            self.assertFalse(stats.HasField("workers"))
            after = stats.expert_cache
            self.assertGreaterEqual(after.requests - before.requests, 4 * 5)  # >= 1 per layer and step
            self.assertEqual((after.misses, after.hit_rate, after.evictions, after.bytes_read), (0, 1.0, 0, 0))
            self.assertEqual(drain(c.generate("cache me", max_tokens=5, ignore_eos=True, temperature=0))[1], ids)
        finally:
            s.stop()

        # A cache of 5 of the 32 experts (as --memory-budget would give a
        # few hundred KiB above the fixed part; the test hook avoids the
        # run-to-run noise of the process's RSS): steps miss, read and evict.
        s = Server(*args, model=model, env={"ST_TEST_CACHE_SLOTS": "5"})
        try:
            c = st_client.Client(s.target)
            _, got, _, _ = drain(c.generate("cache me", max_tokens=5, ignore_eos=True, temperature=0))
            self.assertEqual(got, ids)  # the same numbers from a small cache
            cache = c.stats().expert_cache
            self.assertEqual(cache.slots, 5)
            self.assertGreater(cache.misses, 0)
            self.assertGreater(cache.evictions, 0)
            self.assertEqual(cache.hits + cache.misses, cache.requests)
            self.assertAlmostEqual(cache.hit_rate, cache.hits / cache.requests)
            self.assertEqual(cache.bytes_read, cache.reads * cache.slot_bytes)
            self.assertGreaterEqual(cache.reads, cache.misses)
            self.assertGreaterEqual(cache.stall_seconds, 0)
            m = metrics(s.http_port)
            self.assertEqual(m["smallthinker:expert_cache_slots"], cache.slots)
            self.assertEqual(m["smallthinker:expert_cache_requests_total"], cache.requests)
            self.assertEqual(m["smallthinker:expert_cache_hits_total"], cache.hits)
            self.assertEqual(m["smallthinker:expert_cache_misses_total"], cache.misses)
            self.assertEqual(m["smallthinker:expert_cache_reads_total"], cache.reads)
            self.assertEqual(m["smallthinker:expert_cache_bytes_read_total"], cache.bytes_read)
            self.assertEqual(m["smallthinker:expert_cache_evictions_total"], cache.evictions)
            self.assertAlmostEqual(m["smallthinker:expert_cache_hit_rate"], cache.hit_rate)
            self.assertAlmostEqual(m["smallthinker:expert_cache_stall_seconds_total"], cache.stall_seconds)
            # No --speculate here: no guesses, none dropped.
            self.assertEqual(cache.guesses_dropped, 0)
            self.assertEqual(m["smallthinker:expert_cache_guesses_dropped_total"], cache.guesses_dropped)
            self.assertNotIn("smallthinker:workers_up", m)
        finally:
            s.stop()

        # Without --no-stats the served traffic's routing counts (not the
        # warm-up's) are saved at shutdown, for the next start's warm cache
        # (as run and chat do).
        stats_file = model + ".stpack.stats"
        self.assertFalse(os.path.exists(stats_file))

        def served(prompts):
            s = Server("--parallel", "2", "--ctx", "256", model=model)
            try:
                for p in prompts:
                    drain(st_client.Client(s.target).generate(p, max_tokens=5, ignore_eos=True))
            finally:
                s.stop()
            with open(stats_file) as f:
                lines = f.read().split("\n")
            self.assertEqual(lines[0], "smallthinker-expert-stats 1")
            counts = [int(x) for line in lines[3:] for x in line.split()]
            self.assertEqual(len(counts), 32)
            return sum(counts)

        self.assertEqual(served([]), 0)  # no requests: nothing counted
        # One request: top-2 on each of 4 layers for each of its tokens.
        self.assertEqual(served(["count me"]) % 8, 0)
        self.assertGreater(served(["count me"]), 0)

    def test_serve_with_a_worker_equals_serve_without(self):
        worker, address = start_worker(MODEL)
        try:
            s = Server("--parallel", "2", "--ctx", "256", "--workers", address)
            try:
                c = st_client.Client(s.target)
                kw = dict(max_tokens=12, temperature=0, ignore_eos=True)
                with_worker = drain(c.generate("Distributed hello", **kw))[:2]
                self.assertEqual(with_worker, drain(C.generate("Distributed hello", **kw))[:2])
                code, body = curl(s.http_port, "/v1/completions", {"prompt": "Distributed hello", **kw})
                self.assertEqual(code, 200, body)
                self.assertEqual(json.loads(body)["choices"][0]["text"], with_worker[0])
                w = c.stats().workers
                self.assertEqual(w.workers_up, 1)
                self.assertGreater(w.remote_items, 0)
                self.assertGreater(w.remote_requests, 0)
                self.assertEqual(w.failovers, 0)
                m = metrics(s.http_port)
                self.assertEqual(m["smallthinker:workers_up"], 1)
                self.assertEqual(m["smallthinker:worker_failovers_total"], 0)
                self.assertGreaterEqual(m["smallthinker:worker_remote_items_total"], w.remote_items)
                self.assertIn("smallthinker:worker_readmissions_total", m)
                self.assertIn("smallthinker:worker_timeouts_total", m)
            finally:
                s.stop()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            worker.stdout.close()

    def test_non_streaming_client_disconnect_stops_generation(self):
        before = CS.stats()
        # The client closes its connection once the request is generating;
        # the server notices the closed socket and cancels instead of
        # generating all 4000 tokens. (Closing after a fixed time, as curl's
        # --max-time did, raced the tiny model: on a fast host it generated
        # all 4000 tokens within the second.)
        sock = http_post(SMALL.http_port, "/v1/completions",
                         {"prompt": "x", "max_tokens": 4000, "ignore_eos": True}, "sesame")
        generating = False
        for _ in range(1000):
            if CS.stats().requests_processing == 1:
                generating = True
                break
            time.sleep(0.002)
        sock.close()
        self.assertTrue(generating)
        st = stats_when(lambda st: st.requests_processing == 0, 5)
        self.assertEqual(st.requests_processing, 0)
        self.assertEqual(st.kv_cache_bytes, 0)
        self.assertLess(st.tokens_predicted_total - before.tokens_predicted_total, 4000)
        _, ids, _, _ = drain(CS.generate("after", max_tokens=3, ignore_eos=True))
        self.assertEqual(len(ids), 3)

    def test_tls(self):
        cert, key = os.path.join(TMP.name, "cert.pem"), os.path.join(TMP.name, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        s = Server("--tls-cert", cert, "--tls-key", key)
        try:
            c = st_client.Client(s.target, root_cert=cert)
            _, ids, _, _ = drain(c.generate("secure", max_tokens=3, ignore_eos=True))
            self.assertEqual(len(ids), 3)
            out = subprocess.run(["curl", "-sS", "--cacert", cert, f"https://127.0.0.1:{s.http_port}/health"],
                                 capture_output=True, timeout=30)
            self.assertEqual(out.stdout.decode(), '{"status":"ok"}')
            plain = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{s.http_port}/health"],
                                   capture_output=True, timeout=30)
            self.assertNotEqual(plain.stdout.decode(), '{"status":"ok"}')
        finally:
            s.stop()

    def test_cors_preflight_and_origin_header(self):
        # SMALL has --cors-origin and an API key: the preflight (which carries
        # no key) is answered, and replies, even refusals, name the origin.
        code, h = response_headers(SMALL.http_port, "/v1/chat/completions", "OPTIONS", [
            "Origin: http://localhost:3000", "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: authorization, content-type"])
        self.assertEqual(code, 204)
        self.assertEqual(h["access-control-allow-origin"], "http://localhost:3000")
        self.assertIn("POST", h["access-control-allow-methods"])
        self.assertEqual(h["access-control-allow-headers"], "authorization, content-type")
        code, h = response_headers(SMALL.http_port, "/v1/models")
        self.assertEqual(code, 401)
        self.assertEqual(h["access-control-allow-origin"], "http://localhost:3000")
        # Without --cors-origin: no CORS headers.
        code, h = response_headers(MAIN.http_port, "/v1/models")
        self.assertEqual(code, 200)
        self.assertNotIn("access-control-allow-origin", h)

    def test_openai_client_shapes(self):
        # What SDK and agent clients send: a developer message, an assistant
        # turn with tool calls and null content, text parts, a tool reply,
        # both max-token fields (max_completion_tokens wins), seed -1 and
        # top_p 0 (llama.cpp's "random seed" and "greedy").
        code, body = curl(MAIN.http_port, "/v1/chat/completions", {
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                             {"type": "text", "text": "In Paris."}]},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "max_tokens": 9, "max_completion_tokens": 3, "seed": -1, "top_p": 0,
            "tool_choice": "none", "ignore_eos": True})
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["usage"]["completion_tokens"], 3)
        # Ids are random (a counter had repeated them after every restart),
        # and gRPC Chat takes the developer role as HTTP does.
        first = json.loads(body)["id"]
        code, body = curl(MAIN.http_port, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
        self.assertEqual(code, 200, body)
        for i in (first, json.loads(body)["id"]):
            self.assertRegex(i, r"^chatcmpl-[0-9a-f]{24}$")
        self.assertNotEqual(first, json.loads(body)["id"])
        _, ids, _, _ = drain(C.chat([("developer", "Be brief."), ("user", "hi")],
                                    max_tokens=2, ignore_eos=True))
        self.assertEqual(len(ids), 2)
        # The SDKs' models.retrieve: ours by id, another 404 as OpenAI's.
        code, body = curl(MAIN.http_port, "/v1/models")
        model_id = json.loads(body)["data"][0]["id"]
        code, body = curl(MAIN.http_port, f"/v1/models/{model_id}")
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["id"], model_id)
        self.assertEqual(json.loads(body)["object"], "model")
        code, body = curl(MAIN.http_port, "/v1/models/gpt-4o")
        self.assertEqual(code, 404, body)
        self.assertEqual(json.loads(body)["error"]["code"], "model_not_found")
        # With include_usage every chunk but the last says "usage": null.
        code, body = curl(MAIN.http_port, "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}, stream=True)
        self.assertEqual(code, 200, body)
        chunks = [json.loads(e) for e in sse_events(body) if e != "[DONE]"]
        self.assertTrue(all(c["usage"] is None for c in chunks[:-1]), chunks)
        self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 3)
        self.assertTrue(all(c["choices"][0]["logprobs"] is None for c in chunks[:-1]), chunks)

    def test_readme_curl_examples(self):
        # The README's curl commands, against this server, sent as `curl -d`
        # sends them (form-encoded), also above the 8 KiB at which httplib's
        # form parsing used to refuse them with 413.
        code, body = curl(MAIN.http_port, "/v1/chat/completions",
                          '{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8}',
                          json_type=False)
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["choices"][0]["message"]["role"], "assistant")
        padded = ('{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8, '
                  '"user": "' + "x" * 10000 + '"}')
        code, body = curl(MAIN.http_port, "/v1/chat/completions", padded, json_type=False)
        self.assertEqual(code, 200, body)
        code, body = curl(MAIN.http_port, "/v1/chat/completions",
                          '{"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 8, '
                          '"stream": true}', stream=True, json_type=False)
        self.assertEqual(code, 200)
        events = sse_events(body)
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(json.loads(events[0])["choices"][0]["delta"]["role"], "assistant")


if __name__ == "__main__":
    unittest.main()
