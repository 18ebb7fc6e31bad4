"""Issue 6, endurance in the real ComfyUI server (tiny models, CPU): interrupts and many runs leak nothing.

* 50 interrupts in the middle of sampling (256 px tiny stand-in, 10 scales, interrupted after scale 1 … 8);
  afterwards a fixed-seed run gives the same image as before the interrupts and as a freshly loaded model.
* 200 sequential runs of a small 64 px workflow (a new seed each time, so ComfyUI's cache never short-circuits the
  sampler); the server's resident memory must stay flat after warm-up.
Memory is read from /proc/<server pid>/status (VmRSS now, VmHWM = peak). Figures are printed and written to
artifacts/reliability/endurance_*.json. Both tests run in CI. No wall-clock budget for the whole test (its speed
depends on the machine and its load, and speed is measured by benchmarks, never asserted): a hang is caught by each
run's own timeout instead.
"""
import json
import os
import time
from pathlib import Path

from .fixtures_models import VAR_TINY, VAR_TINY_256
from .test_nodes import _id, graph, saved_images

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR") or REPO / "artifacts") / "reliability"
INTERRUPTS = 50
RUNS, WARMUP = 200, 20
MAX_GROWTH_MIB = 150          # generous: the allocator's noise is a few MiB, a real per-run leak adds up to more


def _record(name: str, data: dict):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"endurance_{name}.json").write_text(json.dumps(data, indent=1))
    print(f"\n[endurance] {name}: {json.dumps({k: v for k, v in data.items() if k != 'rss_series'})}")


def _images(comfy, entry, save):
    return [im.tobytes() for im in saved_images(comfy, entry, save)]


def test_50_interrupts_mid_sampling_then_same_image(pack_loaded):
    comfy = pack_loaded
    t0 = time.monotonic()
    prompt, save, _ = graph(comfy, var=VAR_TINY_256, seed=3, batch=1, preview="every scale")
    sampler = _id(prompt, "ScalewiseSampler")
    baseline, _ = comfy.run(prompt, timeout=300)            # also loads the model: the memory baseline includes it
    assert baseline["status"]["status_str"] == "success"
    before_images = _images(comfy, baseline, save)
    mem_before = comfy.memory_mib()

    interrupted, at_scale = 0, []
    with comfy.ws() as ws:
        for i in range(INTERRUPTS):
            run = json.loads(json.dumps(prompt))
            run[sampler]["inputs"]["seed"] = 100 + i            # a new sampler run each time
            pid = comfy.queue(run, client_id=ws.client_id)
            scale = 1 + i % 8                                   # after scale 1 … 8 of 10
            ws.wait_for(lambda m: m["type"] == "progress" and m["data"].get("prompt_id") == pid
                        and m["data"].get("node") == sampler and m["data"]["value"] >= scale, timeout=120)
            comfy.interrupt()
            end = ws.wait_end(pid, timeout=120)
            assert end["type"] == "execution_interrupted", f"run {i} was not interrupted: {end}"
            done = [m["data"]["value"] for m in ws.of_type("progress", pid) if m["data"].get("node") == sampler]
            assert max(done) < 10, f"run {i} reached the last scale before the interrupt"
            at_scale.append(max(done))
            interrupted += 1
    mem_after_interrupts = comfy.memory_mib()

    after, _ = comfy.run(prompt, timeout=300)
    assert after["status"]["status_str"] == "success"
    assert _images(comfy, after, save) == before_images, "the interrupts changed the fixed-seed image"
    # the same prompt on a freshly loaded model (auto = fp32 on CPU: a different input forces a new load)
    fresh_prompt = json.loads(json.dumps(prompt))
    fresh_prompt[_id(prompt, "ScalewiseVARLoader")]["inputs"]["dtype"] = "auto"
    fresh, _ = comfy.run(fresh_prompt, timeout=300)
    assert fresh["status"]["status_str"] == "success"
    assert _images(comfy, fresh, save) == before_images, "a fresh model gives another image than the interrupted one"

    growth = mem_after_interrupts["rss"] - mem_before["rss"]
    _record("interrupts", {
        "interrupts": interrupted, "interrupted_after_scale": {s: at_scale.count(s) for s in sorted(set(at_scale))},
        "rss_before_mib": round(mem_before["rss"], 1), "rss_after_mib": round(mem_after_interrupts["rss"], 1),
        "rss_growth_mib": round(growth, 1), "peak_rss_mib": round(mem_after_interrupts["hwm"], 1),
        "same_image_after": True, "same_image_as_fresh_model": True, "seconds": round(time.monotonic() - t0, 1)})
    assert growth < MAX_GROWTH_MIB, f"RSS grew by {growth:.0f} MiB over {interrupted} interrupts"


def test_200_sequential_runs_keep_memory_flat(pack_loaded):
    comfy = pack_loaded
    t0 = time.monotonic()
    prompt, save, _ = graph(comfy, var=VAR_TINY, seed=0, batch=1, preview="every scale")
    sampler = _id(prompt, "ScalewiseSampler")
    series, images = [], set()
    with comfy.ws() as ws:
        for i in range(RUNS):
            prompt[sampler]["inputs"]["seed"] = 5000 + i
            pid = comfy.queue(prompt, client_id=ws.client_id)
            end = ws.wait_end(pid, timeout=120)
            assert end["type"] == "execution_success", f"run {i}: {end}"
            series.append(comfy.memory_mib()["rss"])
            if i % 50 == 0:                      # spot check: the runs really produce (different) images
                entry = comfy.wait(pid)
                images.add(_images(comfy, entry, save)[0])
    assert len(images) == len(range(0, RUNS, 50))
    warm = series[WARMUP - 1]
    final = series[-1]
    growth = final - warm
    tail = series[WARMUP - 1:]
    _record("runs", {
        "runs": RUNS, "warmup_runs": WARMUP, "rss_after_first_run_mib": round(series[0], 1),
        "rss_after_warmup_mib": round(warm, 1), "rss_final_mib": round(final, 1),
        "rss_growth_after_warmup_mib": round(growth, 1), "rss_max_after_warmup_mib": round(max(tail), 1),
        "rss_min_after_warmup_mib": round(min(tail), 1), "peak_rss_mib": round(comfy.memory_mib()["hwm"], 1),
        "seconds": round(time.monotonic() - t0, 1), "s_per_run": round((time.monotonic() - t0) / RUNS, 3),
        "rss_series": [round(x, 1) for x in series]})
    assert growth < MAX_GROWTH_MIB, f"RSS grew by {growth:.0f} MiB over {RUNS - WARMUP} runs after warm-up"
