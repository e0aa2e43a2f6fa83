#!/usr/bin/env python3
"""Example client for `smallthinker serve`'s gRPC InferenceService.

Generates the Python stubs from proto/smallthinker/v1/inference.proto at
start-up with grpc_tools.protoc (Debian: python3-grpcio, python3-grpc-tools),
so nothing generated is checked in.

  client.py --target 127.0.0.1:50051 generate "Once upon a time" --max-tokens 32
  client.py --target 127.0.0.1:50051 chat "Hi, who are you?"
  client.py --target 127.0.0.1:50051 tokenize "Hello world"
  client.py --target 127.0.0.1:50051 info | stats | health
"""
import argparse
import importlib
import os
import sys
import tempfile

import grpc

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs(proto_root=PROTO_ROOT, out_dir=None):
    """Compiles inference.proto into out_dir and returns (messages, services)."""
    from grpc_tools import protoc

    if out_dir is None:  # removed when the process exits
        tmp = tempfile.TemporaryDirectory(prefix="smallthinker_stubs_")
        load_stubs.keep = tmp  # lives as long as the module
        out_dir = tmp.name
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{proto_root}",
        "-I" + os.path.join(os.path.dirname(protoc.__file__), "_proto"), f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}", "smallthinker/v1/inference.proto"
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed ({rc}) on {proto_root}")
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    pb = importlib.import_module("smallthinker.v1.inference_pb2")
    pb_grpc = importlib.import_module("smallthinker.v1.inference_pb2_grpc")
    return pb, pb_grpc


class Client:
    """A thin wrapper: one channel, optional API key, stub access."""

    def __init__(self, target, api_key=None, root_cert=None):
        self.pb, pb_grpc = load_stubs()
        if root_cert:
            with open(root_cert, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            self.channel = grpc.secure_channel(target, creds)
        else:
            self.channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.InferenceServiceStub(self.channel)
        self.metadata = [("authorization", f"Bearer {api_key}")] if api_key else None

    def options(self, max_tokens=64, temperature=None, seed=0, stop=(), ignore_eos=False,
                context_size=0):
        # A negative seed means random, as 0 (the field is unsigned).
        o = self.pb.GenerateOptions(max_tokens=max_tokens, seed=max(seed, 0), stop=list(stop),
                                    ignore_eos=ignore_eos, context_size=context_size)
        if temperature is not None:
            o.temperature.value = temperature
        return o

    def generate(self, prompt, timeout=None, **kw):
        """Yields GenerateResponse messages; prompt is text or a list of ids."""
        req = self.pb.GenerateRequest(options=self.options(**kw))
        if isinstance(prompt, str):
            req.text = prompt
        else:
            req.token_ids.ids.extend(prompt)
        return self.stub.Generate(req, metadata=self.metadata, timeout=timeout)

    def chat(self, messages, timeout=None, **kw):
        req = self.pb.ChatRequest(options=self.options(**kw))
        for role, content in messages:
            req.messages.add(role=role, content=content)
        return self.stub.Chat(req, metadata=self.metadata, timeout=timeout)

    def tokenize(self, text, parse_special=False):
        return list(self.stub.Tokenize(self.pb.TokenizeRequest(text=text, parse_special=parse_special),
                                       metadata=self.metadata).ids)

    def detokenize(self, ids):
        return self.stub.Detokenize(self.pb.DetokenizeRequest(ids=ids), metadata=self.metadata).text

    def info(self):
        return self.stub.GetModelInfo(self.pb.GetModelInfoRequest(), metadata=self.metadata)

    def stats(self):
        return self.stub.GetStats(self.pb.GetStatsRequest(), metadata=self.metadata)

    def health(self, service=""):
        """grpc.health.v1 status name ("SERVING", "NOT_SERVING", ...), by raw call
        (no grpc_health package needed: the messages are one string / one enum)."""
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                        request_serializer=lambda s: _health_request(s),
                                        response_deserializer=_health_status)
        return call(service, timeout=5)


def _health_request(service):
    data = service.encode()
    return (b"\x0a" + bytes([len(data)]) + data) if data else b""


def _health_status(raw):
    # HealthCheckResponse { ServingStatus status = 1; } as a varint field.
    value = raw[1] if len(raw) >= 2 and raw[0] == 0x08 else 0
    return {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}.get(value, "?")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="127.0.0.1:50051")
    p.add_argument("--api-key", default=os.environ.get("SMALLTHINKER_API_KEY"))
    p.add_argument("--root-cert", help="PEM CA certificate: connect with TLS")
    p.add_argument("command", choices=["generate", "chat", "tokenize", "info", "stats", "health"])
    p.add_argument("text", nargs="?", default="")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float)
    p.add_argument("--seed", type=int, default=0, help="0 or negative: random")
    a = p.parse_args()
    c = Client(a.target, a.api_key, a.root_cert)
    if a.command in ("generate", "chat"):
        kw = dict(max_tokens=a.max_tokens, temperature=a.temperature, seed=a.seed)
        stream = c.generate(a.text, **kw) if a.command == "generate" else c.chat([("user", a.text)], **kw)
        for r in stream:
            sys.stdout.write(r.text)
            sys.stdout.flush()
            if r.finish_reason:
                u = r.usage
                print(f"\n[{c.pb.FinishReason.Name(r.finish_reason)}] prompt {u.prompt_tokens} tokens, "
                      f"{u.completion_tokens} generated, ttft {u.time_to_first_token_seconds * 1e3:.1f} ms, "
                      f"{u.decode_tokens_per_second:.1f} tok/s", file=sys.stderr)
    elif a.command == "tokenize":
        print(" ".join(map(str, c.tokenize(a.text))))
    elif a.command == "info":
        print(c.info())
    elif a.command == "stats":
        print(c.stats())
    else:
        print(c.health())


if __name__ == "__main__":
    main()
