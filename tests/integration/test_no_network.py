"""Issue 6: the pack never reaches the network. Full VAR and Switti text-to-image workflows run in a server whose
outbound connections are refused, and no attempt is made.

The guard (tests/integration/netguard/sitecustomize.py) is injected into the shared test server of the whole pytest
session (comfy_server.py puts it on the server's PYTHONPATH), not into a dedicated server: no extra start-up
(~10-20 s on 2 cores, and a second copy of the clip files in memory), and every test that drives the server, the
UI tests' example workflows included, runs offline too, so an attempt made by any of them would show up in the
record checked here. The guard refuses every non-loopback connect / connect_ex / name lookup and records it with
its stack, so an attempt from the pack's code (a frame under the pack folder) can be told from one of ComfyUI's own.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from .test_nodes import graph
from .test_switti_nodes import switti_graph

GUARD_DIR = Path(__file__).resolve().parent / "netguard"
REPO = Path(__file__).resolve().parents[2]


def _entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _from_pack(entry: dict, pack_folder: str) -> bool:
    pack_dir = str(Path(os.environ.get("PACK_DIR") or REPO).resolve())
    return any(f"/{pack_folder}/" in frame or frame.startswith(pack_dir + os.sep) for frame in entry["stack"])


def test_guard_refuses_and_records_outbound_connections(tmp_path):
    """The guard itself, in a throw-away interpreter: a connection to a documentation address (192.0.2.1) and a
    name lookup are refused and recorded with their stack; loopback passes (and is not recorded)."""
    record = tmp_path / "net.jsonl"
    code = ("import socket, urllib.request\n"
            "for call in (lambda: socket.create_connection(('192.0.2.1', 443), timeout=1),\n"
            "             lambda: urllib.request.urlopen('https://huggingface.co', timeout=1),\n"
            "             lambda: socket.socket().connect(('192.0.2.1', 80)),\n"
            "             lambda: socket.create_connection(('127.0.0.1', 9), timeout=1)):\n"
            "    try:\n"
            "        call()\n"
            "    except OSError as e:\n"
            "        print(type(e).__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(GUARD_DIR), "SCALEWISE_NET_GUARD_LOG": str(record)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    entries = _entries(record)
    assert [e["event"] for e in entries] == ["installed", "refused", "refused", "refused"]
    assert [(e["call"], e["host"]) for e in entries[1:]] == [
        ("socket.getaddrinfo", "192.0.2.1"), ("socket.getaddrinfo", "huggingface.co"), ("socket.connect", "192.0.2.1")]
    assert all(any("<string>" in frame for frame in e["stack"]) for e in entries[1:])
    assert "ConnectionRefusedError" in out.stdout.split()      # loopback got a real (unrecorded) refusal


def test_workflows_run_offline_and_try_no_connection(pack_loaded):
    comfy = pack_loaded
    entries = _entries(comfy.net_guard_log)
    installed = [e for e in entries if e["event"] == "installed"]
    assert any(e["pid"] == comfy.pid for e in installed), "the network guard is not active in the test server"
    before = len(entries)

    var_prompt, _, _ = graph(comfy, guider="ssg+igg", seed=21, batch=2)
    entry, _ = comfy.run(var_prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]
    switti_prompt, _, _ = switti_graph(comfy, seed=22)
    entry, _ = comfy.run(switti_prompt, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:2000]

    entries = _entries(comfy.net_guard_log)
    refused = [e for e in entries if e["event"] == "refused"]
    ours = [e for e in refused if _from_pack(e, comfy.pack_folder)]
    during = [e for e in entries[before:] if e["event"] == "refused"]
    print(f"\n[no-network] attempts recorded this session: {len(refused)} (from the pack: {len(ours)}, during the "
          f"two workflows: {len(during)})")
    for e in refused:
        print(f"[no-network] other attempt: {e['call']} {e['host']}:{e['port']} from {e['stack'][-3:]}")
    assert not ours, "the pack tried to reach the network:\n" + json.dumps(ours, indent=1)[:4000]
    assert not during, "a workflow tried to reach the network:\n" + json.dumps(during, indent=1)[:4000]
