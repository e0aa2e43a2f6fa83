#!/usr/bin/env python3
"""deploy/ kept true to the engine: every `smallthinker` command line in the
systemd units, the compose file and the Kubernetes manifest uses a real
subcommand and real flags (from `--help`); the YAML parses and the cluster
configs it mounts are the ones in deploy/cluster/; the units pass
`systemd-analyze verify`; the Dockerfile's build packages keep up with
scripts/setup; and the two systemd units, run as written (paths swapped for
a temporary directory), serve a completion with the experts on the worker.
Needs ST_CLI (the smallthinker binary) and ST_SOURCE_DIR in the environment.
(The textprotos themselves are parsed and validated by the C++
ClusterConfigTest.DeployConfigsAreValid.)"""
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import yaml

SOURCE_DIR = os.environ.get("ST_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("ST_CLI", os.path.join(SOURCE_DIR, "build", "tools", "smallthinker"))
DEPLOY = os.path.join(SOURCE_DIR, "deploy")
INSTALLED = "/usr/local/bin/smallthinker"
UNITS = ["smallthinker-serve.service", "smallthinker-worker.service"]

_help_cache = {}


def read(path):
    with open(path) as f:
        return f.read()


def help_flags(sub):
    """The option names `smallthinker SUB --help` lists."""
    if sub not in _help_cache:
        out = subprocess.run([CLI, sub, "--help"], capture_output=True, text=True, check=True).stdout
        flags = set()
        for line in out.splitlines():
            m = re.match(r"\s+(-[^\s]+)", line)
            if m:
                flags.update(f for f in m.group(1).split(",") if f.startswith("-"))
        _help_cache[sub] = flags
    return _help_cache[sub]


def check_command(test, args, where):
    """args = [subcommand, flags...]: the subcommand exists and so does every flag."""
    test.assertIn(args[0], ("serve", "worker", "run", "chat", "bench", "bench-serve"), where)
    flags = help_flags(args[0])
    test.assertGreater(len(flags), 3, f"{where}: no options parsed from `{args[0]} --help`")
    for a in args[1:]:
        if a.startswith("-"):
            test.assertIn(a.split("=", 1)[0], flags, f"{where}: `{args[0]}` has no option {a}")


def unit(path):
    """(Environment= defaults, ExecStart) of a systemd unit's [Service]."""
    env, exec_start, section = {}, None, None
    for line in read(path).splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line.startswith("Environment="):
            key, _, value = line[len("Environment="):].partition("=")
            env[key] = value
        elif section == "[Service]" and line.startswith("ExecStart="):
            exec_start = line[len("ExecStart="):]
    return env, exec_start


def expand(exec_start, env):
    """systemd's expansion: ${VAR} is one word, a word that is $VAR splits on spaces."""
    words = []
    for w in shlex.split(exec_start):
        m = re.fullmatch(r"\$(\w+)", w)
        if m:
            words += env.get(m.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}", lambda v: env.get(v.group(1), ""), w))
    return words


def textproto_body(text):
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


class DeployFilesTest(unittest.TestCase):
    def test_systemd_units_use_real_flags(self):
        for name in UNITS:
            env, exec_start = unit(os.path.join(DEPLOY, "systemd", name))
            self.assertIsNotNone(exec_start, name)
            args = expand(exec_start, env)
            self.assertEqual(args[0], INSTALLED, name)
            check_command(self, args[1:], name)

    def test_systemd_units_verify(self):
        if shutil.which("systemd-analyze") is None:
            self.skipTest("systemd-analyze is not installed")
        with tempfile.TemporaryDirectory() as d:
            for name in UNITS:
                text = read(os.path.join(DEPLOY, "systemd", name))
                with open(os.path.join(d, name), "w") as f:
                    f.write(text.replace(INSTALLED, os.path.abspath(CLI)))
            r = subprocess.run(["systemd-analyze", "verify", *[os.path.join(d, n) for n in UNITS]],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stderr.strip(), "", "systemd-analyze warnings")

    def test_compose(self):
        compose = yaml.safe_load(read(os.path.join(DEPLOY, "docker", "compose.yaml")))
        services = compose["services"]
        workers = {n: s for n, s in services.items() if s["command"][0] == "worker"}
        self.assertEqual(len(workers), 2)
        for name, s in services.items():
            check_command(self, s["command"], f"compose service {name}")
        cluster_file = os.path.normpath(os.path.join(DEPLOY, "docker", compose["configs"]["cluster"]["file"]))
        self.assertEqual(cluster_file, os.path.join(DEPLOY, "cluster", "compose.textproto"))
        serve = services["serve"]["command"]
        target = services["serve"]["configs"][0]["target"]
        self.assertEqual(serve[serve.index("--cluster-config") + 1], target)
        # Every configured worker is a compose service listening on that port.
        addresses = re.findall(r'address:\s*"([^"]+)"', read(cluster_file))
        self.assertEqual(len(addresses), len(workers))
        for a in addresses:
            host, port = a.rsplit(":", 1)
            self.assertIn(host, workers)
            listen = workers[host]["command"][workers[host]["command"].index("--listen") + 1]
            self.assertEqual(listen, f"0.0.0.0:{port}", "a worker in a container must bind all addresses")

    def test_kubernetes(self):
        docs = list(yaml.safe_load_all(read(os.path.join(DEPLOY, "kubernetes", "smallthinker.yaml"))))
        by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
        config = by[("ConfigMap", "smallthinker-cluster")]["data"]["cluster.textproto"]
        self.assertEqual(textproto_body(config),
                         textproto_body(read(os.path.join(DEPLOY, "cluster", "kubernetes.textproto"))))
        sts = by[("StatefulSet", "smallthinker-worker")]
        svc = by[("Service", "smallthinker-worker")]
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        self.assertEqual(sts["spec"]["serviceName"], "smallthinker-worker")
        port = svc["spec"]["ports"][0]["port"]
        want = [f"smallthinker-worker-{i}.smallthinker-worker:{port}" for i in range(sts["spec"]["replicas"])]
        self.assertEqual(re.findall(r'address:\s*"([^"]+)"', config), want)
        worker = sts["spec"]["template"]["spec"]["containers"][0]
        check_command(self, worker["args"], "StatefulSet smallthinker-worker")
        self.assertEqual(worker["args"][worker["args"].index("--listen") + 1], f"0.0.0.0:{port}")
        serve = by[("Deployment", "smallthinker-serve")]["spec"]["template"]["spec"]
        c = serve["containers"][0]
        check_command(self, c["args"], "Deployment smallthinker-serve")
        mount = next(m for m in c["volumeMounts"] if m["name"] == "cluster")["mountPath"]
        self.assertEqual(c["args"][c["args"].index("--cluster-config") + 1], f"{mount}/cluster.textproto")
        http = c["args"][c["args"].index("--http-listen") + 1]
        self.assertEqual(c["readinessProbe"]["httpGet"]["port"], int(http.rsplit(":", 1)[1]))

    def test_dockerfile_build_packages_follow_setup(self):
        setup = read(os.path.join(SOURCE_DIR, "scripts", "setup"))
        docker = read(os.path.join(DEPLOY, "docker", "Dockerfile"))
        needed = set(re.findall(r"\b(lib[\w.+-]+-dev|protobuf-compiler(?:-grpc)?|cmake|ninja-build)\b", setup))
        needed -= {"libclang-rt-14-dev"}  # the fuzz build's compiler runtime
        self.assertGreater(len(needed), 10)
        for p in sorted(needed):
            self.assertRegex(docker, rf"(?<![\w-]){re.escape(p)}(?![\w-])", f"Dockerfile lacks {p}")
        cmake = read(os.path.join(SOURCE_DIR, "CMakeLists.txt"))
        for opt in re.findall(r"-D(ST_\w+)=", docker):
            self.assertIn(f"option({opt} ", cmake)
        self.assertIn(f'ENTRYPOINT ["{INSTALLED}"]', docker)


class SameHostUnitsTest(unittest.TestCase):
    """smallthinker-worker.service and smallthinker-serve.service as written,
    with deploy/cluster/same-host.textproto: a real worker on a Unix socket,
    a real server pairing with it, one completion through the HTTP API."""

    def test_units_serve_a_completion_with_the_worker(self):
        with tempfile.TemporaryDirectory(prefix="deploy_test_") as d:
            model = os.path.join(d, "model.gguf")
            subprocess.run([CLI, "synth", "--preset", "tiny", "--type", "q8_0", "--out", model],
                           check=True, capture_output=True)
            run_dir = os.path.join(d, "run")
            os.mkdir(run_dir)
            cluster = read(os.path.join(DEPLOY, "cluster", "same-host.textproto"))
            self.assertIn("/run/smallthinker/", cluster)
            with open(os.path.join(d, "cluster.textproto"), "w") as f:
                f.write(cluster.replace("/run/smallthinker/", run_dir + "/"))

            env, exec_start = unit(os.path.join(DEPLOY, "systemd", "smallthinker-worker.service"))
            self.assertTrue(env["ST_WORKER_LISTEN"].startswith("unix:/run/smallthinker/"))
            env.update(ST_MODEL=model, ST_WORKER_LISTEN=env["ST_WORKER_LISTEN"].replace("/run/smallthinker/", run_dir + "/"),
                       ST_WORKER_ARGS="-t 1")
            args = expand(exec_start, env)
            worker = subprocess.Popen([CLI, *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            serve = None
            try:
                self.assertTrue(worker.stdout.readline().startswith("listening "))
                env, exec_start = unit(os.path.join(DEPLOY, "systemd", "smallthinker-serve.service"))
                env.update(ST_MODEL=model, ST_GRPC_LISTEN="127.0.0.1:0", ST_HTTP_LISTEN="127.0.0.1:0",
                           ST_SERVE_ARGS=f"--cluster-config {d}/cluster.textproto -t 1")
                args = expand(exec_start, env)
                serve = subprocess.Popen([CLI, *args[1:]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                         text=True)
                lines = queue.Queue()
                threading.Thread(target=lambda: [lines.put(l.strip()) for l in serve.stdout], daemon=True).start()
                http_port, deadline = None, time.time() + 120
                while time.time() < deadline:
                    try:
                        line = lines.get(timeout=0.2)
                    except queue.Empty:
                        self.assertIsNone(serve.poll(), "serve exited")
                        continue
                    if line.startswith("http listening on"):
                        http_port = int(line.rsplit(":", 1)[1])
                    if line.startswith("ready:"):
                        break
                else:
                    self.fail("serve never became ready")
                out = subprocess.run(
                    ["curl", "-sS", "--max-time", "60", f"http://127.0.0.1:{http_port}/v1/completions",
                     "-H", "Content-Type: application/json", "-d",
                     json.dumps({"prompt": "Hello", "max_tokens": 4, "temperature": 0})],
                    capture_output=True, text=True, timeout=70).stdout
                reply = json.loads(out)
                self.assertEqual(reply["usage"]["completion_tokens"], 4, out)
                metrics = subprocess.run(["curl", "-sS", f"http://127.0.0.1:{http_port}/metrics"],
                                         capture_output=True, text=True, timeout=30).stdout
                values = {k: float(v) for k, v in (l.split(" ") for l in metrics.splitlines()
                                                    if l and not l.startswith("#"))}
                self.assertEqual(values["smallthinker:workers_up"], 1)
                self.assertGreater(values["smallthinker:worker_remote_items_total"], 0)
            finally:
                for p in (serve, worker):
                    if p is not None:
                        p.send_signal(signal.SIGTERM)
                        try:
                            p.wait(timeout=30)
                        except subprocess.TimeoutExpired:
                            p.kill()
                        p.stdout.close()


if __name__ == "__main__":
    unittest.main()
