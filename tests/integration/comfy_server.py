"""A real ComfyUI server for the tests, and a small client for it (HTTP + websocket).

Imports no ComfyUI code: the server runs in a subprocess with this interpreter (the ComfyUI venv's, which has
torch, the pack's deps, pytest, websocket-client and playwright). Both tests/integration and tests/ui load this
file by path under one module name (see the conftests), so one pytest session starts one server.
"""
from __future__ import annotations

import atexit
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PACK_FOLDER = "comfyui-scalewise-guidance"       # the folder name a registry install would use
PACK_DIR = Path(os.environ.get("PACK_DIR") or REPO).resolve()
NET_GUARD_DIR = HERE / "netguard"             # holds sitecustomize.py, put on the server's PYTHONPATH
END_EVENTS = ("execution_success", "execution_error", "execution_interrupted")


def comfy_dir() -> Path | None:
    d = os.environ.get("COMFY_DIR")
    return Path(d).resolve() if d and (Path(d) / "main.py").is_file() else None


class PromptRejected(AssertionError):
    """POST /prompt answered an error (HTTP 400 on validation errors); `body` holds the decoded answer."""

    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {json.dumps(body)[:3000]}")
        self.status, self.body = status, body


class WsCollector:
    """Websocket client that collects every frame in a background thread.

    Text frames are decoded into `messages`; binary frames (previews: 4-byte big-endian event type, then the
    payload; PREVIEW_IMAGE = 1 carries a 4-byte image type and the JPEG/PNG bytes) are kept raw in `binary`.
    """

    def __init__(self, port: int, client_id: str | None = None):
        import websocket  # websocket-client; imported here so collection never needs it

        self.client_id = client_id or uuid.uuid4().hex
        self.messages: list[dict] = []
        self.binary: list[bytes] = []
        self._cond = threading.Condition()
        self._closed = False
        self._ws = websocket.create_connection(f"ws://127.0.0.1:{port}/ws?clientId={self.client_id}", timeout=10)
        self._ws.settimeout(0.5)      # lets the reader notice close()
        self._timeout_exc = websocket.WebSocketTimeoutException
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        while not self._closed:
            try:
                frame = self._ws.recv()
            except self._timeout_exc:
                continue
            except Exception:            # closed by us or by the server
                break
            with self._cond:
                if isinstance(frame, bytes):
                    self.binary.append(frame)
                elif frame:
                    self.messages.append(json.loads(frame))
                self._cond.notify_all()

    def of_type(self, msg_type: str, prompt_id: str | None = None) -> list[dict]:
        with self._cond:
            return [m for m in self.messages if m.get("type") == msg_type
                    and (prompt_id is None or m.get("data", {}).get("prompt_id") == prompt_id)]

    def wait_for(self, predicate, timeout: float = 30) -> dict:
        """Return the first collected message for which predicate(msg) is true (waiting up to timeout s)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    raise TimeoutError(f"no matching websocket message; got {[m.get('type') for m in self.messages]}")
                self._cond.wait(min(left, 1.0))

    def wait_end(self, prompt_id: str, timeout: float = 120) -> dict:
        """The execution_success / _error / _interrupted message of prompt_id."""
        return self.wait_for(lambda m: m.get("type") in END_EVENTS
                             and m.get("data", {}).get("prompt_id") == prompt_id, timeout)

    def close(self):
        self._closed = True
        try:
            self._ws.close()
        except Exception:
            pass
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ComfyClient:
    PromptRejected = PromptRejected       # so tests can write pytest.raises(comfy.PromptRejected)

    def __init__(self, port: int, log_path: Path, work: Path):
        self.port, self.log_path, self.work = port, log_path, work
        self.base = f"http://127.0.0.1:{port}"
        self.models_dir = work / "models"
        self.output_dir = work / "output"
        self.pack_folder = PACK_FOLDER
        self.startup_s = None
        self.pid = None                      # the server process (for /proc/<pid>/status in endurance tests)
        self.net_guard_log = work / "net_attempts.jsonl"   # written by tests/integration/netguard/sitecustomize.py

    # --- HTTP ---
    def request(self, path: str, payload=None, timeout: float = 30) -> bytes:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def get_json(self, path: str):
        return json.loads(self.request(path))

    def post_json(self, path: str, payload):
        return json.loads(self.request(path, payload))

    def object_info(self, node_id: str | None = None) -> dict:
        """All node definitions, or {node_id: definition}; an unknown id gives {} (HTTP 200): assert the key."""
        return self.get_json("/object_info" + (f"/{node_id}" if node_id else ""))

    def queue(self, prompt: dict, client_id: str | None = None, extra_data: dict | None = None) -> str:
        """POST /prompt (API format); returns the prompt_id, raises PromptRejected with the 400 body.
        extra_data: what the frontend adds per prompt (e.g. {"preview_method": "none"})."""
        payload = {"prompt": prompt, **({"client_id": client_id} if client_id else {}),
                   **({"extra_data": extra_data} if extra_data else {})}
        try:
            return self.post_json("/prompt", payload)["prompt_id"]
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            raise PromptRejected(e.code, body) from None

    def wait(self, prompt_id: str, timeout: float = 120) -> dict:
        """The /history entry of prompt_id once it has finished (status.status_str 'success' or 'error')."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hist = self.get_json(f"/history/{prompt_id}")
            if prompt_id in hist:
                return hist[prompt_id]
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s\n{self.log()[-3000:]}")

    def run(self, prompt: dict, timeout: float = 120, extra_data: dict | None = None):
        """Queue with a fresh websocket and wait: returns (history entry, WsCollector) — the collector is
        closed but keeps its messages and binary frames. The end message arrives before the history entry."""
        with self.ws() as ws:
            prompt_id = self.queue(prompt, client_id=ws.client_id, extra_data=extra_data)
            ws.wait_end(prompt_id, timeout)
        return self.wait(prompt_id, timeout), ws

    def interrupt(self):
        self.request("/interrupt", {})      # answers 200 with an empty body: do not JSON-decode

    def free(self, unload_models: bool = True, free_memory: bool = True):
        self.request("/free", {"unload_models": unload_models, "free_memory": free_memory})

    def ws(self, client_id: str | None = None) -> WsCollector:
        return WsCollector(self.port, client_id)

    # --- process ---
    def memory_mib(self) -> dict:
        """The server's resident memory now (rss) and its peak so far (hwm), in MiB, from /proc/<pid>/status
        (Linux; psutil is not needed)."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024          # kB -> MiB
        return {"rss": fields["VmRSS"], "hwm": fields["VmHWM"]}

    # --- log ---
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pack_import_errors(self) -> list[str]:
        """Log lines saying the pack failed to load (import error, failing comfy_entrypoint, no mappings)."""
        pat = re.compile(r"Cannot import|IMPORT FAILED|comfy_entrypoint in|^Skip .* module for custom nodes")
        return [ln for ln in self.log().splitlines() if pat.search(ln) and self.pack_folder in ln]

    def assert_pack_imported(self):
        errors = self.pack_import_errors()
        assert not errors, "pack failed to load:\n" + "\n".join(errors) + "\n--- log tail ---\n" + self.log()[-4000:]

    # --- building prompts ---
    def graph_builder(self, prefix: str | None = ""):
        """comfy_execution.graph_utils.GraphBuilder, loaded by file path so ComfyUI's top-level modules
        (nodes, utils, app, ...) never land on sys.path next to the pack's packages."""
        mod = sys.modules.get("comfy_graph_utils")
        if mod is None:
            spec = importlib.util.spec_from_file_location(
                "comfy_graph_utils", comfy_dir() / "comfy_execution" / "graph_utils.py")
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            sys.modules["comfy_graph_utils"] = mod
        return mod.GraphBuilder(prefix=prefix)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link_pack(cdir: Path):
    """custom_nodes/<PACK_FOLDER> -> PACK_DIR (what .ci/comfy_ci.sh install also does)."""
    link = cdir / "custom_nodes" / PACK_FOLDER
    if link.is_symlink():
        if link.resolve() == PACK_DIR:
            return
        link.unlink()
    elif link.exists():
        return            # a real copy placed there on purpose: leave it
    link.symlink_to(PACK_DIR, target_is_directory=True)


def _models_hook():
    """write_tiny_models from tests/integration/fixtures_models.py, if that file exists. It is imported under the
    package name pytest gave tests/integration (so its relative imports work), else by file path."""
    path = HERE / "fixtures_models.py"
    if not path.is_file():
        return None
    for name, mod in list(sys.modules.items()):
        if getattr(mod, "__file__", None) and Path(mod.__file__).resolve() == HERE / "__init__.py":
            return importlib.import_module(name + ".fixtures_models").write_tiny_models
    spec = importlib.util.spec_from_file_location("scalewise_ci_fixtures_models", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_tiny_models


class ComfyServer:
    def __init__(self, work: Path, extra_args: tuple[str, ...] = ("--preview-method", "auto")):
        """extra_args: command-line flags; by default the user has turned live previews on (ComfyUI's own default
        is none, which the pack honours)."""
        self.work = work
        self.extra_args = tuple(extra_args)
        self.proc = None
        self.client = None

    def start(self, timeout: float = float(os.environ.get("COMFY_START_TIMEOUT", 180))) -> ComfyClient:
        cdir = comfy_dir()
        w = self.work
        for sub in ("models/var", "models/switti", "models/infinity", "models/embeddings", "output", "input", "temp",
                    "user/default"):
            (w / sub).mkdir(parents=True, exist_ok=True)
        # ComfyUI's own example picture, which every install has in its input folder (the d36 editing example)
        example = Path(cdir) / "input" / "example.png"
        if example.is_file() and not (w / "input" / "example.png").exists():
            shutil.copyfile(example, w / "input" / "example.png")
        # Without it the first page load opens the Templates dialog over the canvas. COMFY_UI_SETTINGS (JSON) adds
        # frontend settings, e.g. {"Comfy.VueNodes.Enabled": true} for the Nodes 2.0 mode.
        settings = {"Comfy.TutorialCompleted": True, **json.loads(os.environ.get("COMFY_UI_SETTINGS") or "{}")}
        (w / "user/default/comfy.settings.json").write_text(json.dumps(settings))
        hook = _models_hook()
        if hook is not None:
            hook(w / "models")
        # Absolute paths; the var/switti/infinity keys exist (with an empty extension set) before the pack loads.
        yaml = ["scalewise_ci:", f"    base_path: {w / 'models'}", "    var: var/", "    switti: switti/",
                "    infinity: infinity/",
                "    text_encoders: text_encoders/", "    embeddings: embeddings/"]
        if (REPO / "tests" / "test_packs").is_dir():     # optional test-only node packs (e.g. fault injection)
            yaml.append(f"    custom_nodes: {REPO / 'tests' / 'test_packs'}")
        (w / "extra_model_paths.yaml").write_text("\n".join(yaml) + "\n")
        _link_pack(cdir)

        port = _free_port()
        log_path = w / "server.log"
        cmd = [os.environ.get("COMFY_PYTHON") or sys.executable, "main.py", "--cpu",
               "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
               "--extra-model-paths-config", str(w / "extra_model_paths.yaml"),
               "--output-directory", str(w / "output"), "--input-directory", str(w / "input"),
               "--temp-directory", str(w / "temp"), "--user-directory", str(w / "user"),
               # own database: a second server (e.g. comfy_ci.sh start) must not share ComfyUI/user/comfyui.db
               "--database-url", f"sqlite:///{w / 'comfyui.db'}",
               *self.extra_args, *shlex.split(os.environ.get("COMFY_EXTRA_ARGS", ""))]
        if os.environ.get("COMFY_FRONTEND_ROOT"):  # another frontend build (the static folder of a frontend package)
            cmd += ["--front-end-root", os.environ["COMFY_FRONTEND_ROOT"]]
        # Outbound-network guard (tests/integration/netguard): the server's interpreter loads it as sitecustomize,
        # refuses every non-loopback connection and records the attempt with its stack (test_no_network.py).
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "SCALEWISE_NET_GUARD_LOG": str(w / "net_attempts.jsonl"),
               "PYTHONPATH": os.pathsep.join(p for p in (str(NET_GUARD_DIR), os.environ.get("PYTHONPATH")) if p)}
        t0 = time.monotonic()
        with open(log_path, "w") as log:
            # own session = own process group, so stop() can signal exactly the server and its children
            self.proc = subprocess.Popen(cmd, cwd=cdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        client = ComfyClient(port, log_path, w)
        client.pid = self.proc.pid
        while True:
            try:
                client.request("/system_stats", timeout=2)     # answers only after all nodes are loaded
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{client.log()[-4000:]}")
                if time.monotonic() - t0 > timeout:
                    self.stop()
                    raise RuntimeError(f"ComfyUI not ready after {timeout} s:\n{client.log()[-4000:]}")
                time.sleep(0.25)
        client.startup_s = time.monotonic() - t0
        self.client = client
        return client

    def stop(self):
        """SIGTERM, 10 s grace, then SIGKILL."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(grace)
                return
            except subprocess.TimeoutExpired:
                pass


# One server per pytest session, shared by every conftest that acquires it.
_server: ComfyServer | None = None
_users = 0


def acquire(tmp_path_factory) -> ComfyClient:
    global _server, _users
    if _server is None:
        server = ComfyServer(tmp_path_factory.mktemp("comfy"))
        server.start()
        atexit.register(server.stop)    # also when pytest dies before fixture teardown
        _server = server
    _users += 1
    return _server.client


def release():
    global _server, _users
    _users -= 1
    if _users <= 0 and _server is not None:
        _server.stop()
        _server, _users = None, 0
