"""The benchmark's numbers: throughput against the matmul peak, and the plain-text report."""

from __future__ import annotations

import statistics
from typing import Any

from constants import (
    BATCH_SIZE,
    CHANGED_EPOCHS,
    IMAGE_SIZE,
    MODEL_NAMES,
    TARGET_MODEL_ONE_PEAK,
    TARGET_PROSE_SECONDS,
    TARGET_RATIO,
    TARGET_WARM_SECONDS,
)


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def throughput(flops: dict[str, Any], rec: dict[str, Any], train_seconds: float,
               epochs: int) -> float:
    """Achieved GFLOP/s of one training run: train images at 3x/1x, validation at 1x."""
    per_epoch = (rec["images"]["train"] * flops["train_step"]
                 + rec["images"]["validation"] * flops["forward"])
    return epochs * per_epoch / train_seconds / 1e9


def summarise_throughput(probe: dict[str, Any], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per model: FLOPs, median achieved GFLOP/s (catdog and plain) and fraction of peak."""
    peak = probe["matmul"]["gflops_best"]
    out: dict[str, Any] = {}
    for name in MODEL_NAMES:
        f = probe["flops"][name]
        catdog, best_epoch, plain, secs, plain_secs = [], [], [], [], []
        images = epochs = None
        for pair in pairs:
            rec = next((r for r in pair["records"] if r["model"] == name), None)
            if rec is None:
                continue
            images, epochs = rec["images"], rec["epochs"]
            secs.append(rec["train_seconds"])
            catdog.append(throughput(f, rec, rec["train_seconds"], rec["epochs"]))
            if rec.get("epoch_seconds"):
                best_epoch.append(throughput(f, rec, min(rec["epoch_seconds"]), 1))
            prun = next((r for r in pair["plain_runs"] if r["model"] == name), None)
            if prun is not None:
                plain_secs.append(prun["train_seconds"])
                plain.append(throughput(f, rec, prun["train_seconds"], prun["epochs"]))
        gf = median(catdog)
        out[name] = {
            "forward_gflop_per_image": round(f["forward"] / 1e9, 4),
            "forward_trainable_gflop": round(f["forward_trainable"] / 1e9, 4),
            "forward_frozen_gflop": round(f["forward_frozen"] / 1e9, 4),
            "train_step_gflop_per_image": round(f["train_step"] / 1e9, 4),
            "images": images, "epochs": epochs,
            "catdog_train_seconds_median": median(secs),
            "catdog_gflops_median": gf,
            "catdog_fraction_of_peak": round(gf / peak, 4) if gf else None,
            "catdog_best_epoch_gflops_median": median(best_epoch),
            "plain_train_seconds_median": median(plain_secs),
            "plain_gflops_median": median(plain),
            "plain_fraction_of_peak": round(median(plain) / peak, 4) if plain else None,
        }
    return out


def summarise_precision(records: list[dict[str, Any]], seeds: int) -> dict[str, Any]:
    """Per model and precision, over seeds: test accuracy (mean, sd, each) and the median
    epoch time after the first (which traces), from the run records."""
    out: dict[str, Any] = {}
    for name in MODEL_NAMES:
        for precision in ("float32", "bf16"):
            runs = [r for r in records if r["model"] == name
                    and (r.get("precision") or "float32") == precision
                    and r.get("seed") is not None and r["seed"] < seeds]
            if not runs:
                continue
            accs = [r["test"]["accuracy"] for r in runs]
            epochs = [s for r in runs for s in (r.get("epoch_seconds") or [])[1:]]
            out.setdefault(name, {})[precision] = {
                "seeds": sorted(r["seed"] for r in runs), "test_acc": accs,
                "test_acc_mean": round(statistics.fmean(accs), 4),
                "test_acc_sd": round(statistics.stdev(accs), 4) if len(accs) > 1 else None,
                "epoch_seconds_median": median(epochs)}
    return out


def _acc(r: dict[str, Any] | None) -> str:
    """'93.5% ± 1.2%' over seeds, or '-'."""
    if not r:
        return "-"
    sd = f" ± {r['test_acc_sd']:.1%}" if r["test_acc_sd"] is not None else ""
    return f"{r['test_acc_mean']:.1%}{sd}"


def _epoch(r: dict[str, Any] | None) -> str:
    """The median epoch seconds, or '-'."""
    return f"{r['epoch_seconds_median']:.2f}" if r and r["epoch_seconds_median"] else "-"


def _step(r: dict[str, Any] | None) -> str:
    """A probe's steady step in milliseconds, 'failed', or '-'."""
    if r and "error" in r:
        return "failed"
    return f"{r['step_seconds'] * 1e3:.1f}" if r else "-"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def pages_text(executed: list[str], total: int) -> str:
    """'none', the page names, or 'all N' when every page ran."""
    if not executed:
        return "none"
    if len(executed) == total:
        return f"all {total}"
    return ", ".join(executed)


def stages(events: list[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """A cold build's timeline (harness.timeline) as stages: (start, end, what), in order of
    start: start-up and scan, planning, TensorFlow and the builders before the first fit,
    each fit, each page kernel, the pages after the last fit, docs and MkDocs, the exit."""
    at: dict[str, float] = {}
    for e in events:
        at.setdefault(e["event"], e["t"])
    out: list[tuple[float, float, str]] = []

    def span(a: str, b: str, what: str) -> None:
        if a in at and b in at:
            out.append((at[a], at[b], what))

    span("process starts", "data scanned", "start-up, imports and the data scan")
    span("data scanned", "planned", "the plan (run cache look-ups, page parsing)")
    fits = [e["event"][len("fit starts "):] for e in events if e["event"].startswith("fit starts")]
    pages = [e["event"][len("page starts "):] for e in events
             if e["event"].startswith("page starts")]
    if fits:
        span("planned", f"fit starts {fits[0]}", "TensorFlow, the builders, the decoded images")
    for name in fits:
        span(f"fit starts {name}", f"fit ends {name}", f"fit {name} (and its test scores, maps)")
    for name in pages:
        span(f"page starts {name}", f"page ends {name}", f"page kernel {name}")
    ends = [at[f"page ends {n}"] for n in pages if f"page ends {n}" in at]
    last_fit = max((at[f"fit ends {n}"] for n in fits if f"fit ends {n}" in at), default=None)
    if ends and last_fit is not None:
        out.append((last_fit, max(ends), "pages still running after the last fit"))
    if ends:
        at["last page ends"] = max(ends)
        span("last page ends", "site published", "docs and MkDocs")
    span("site published", "process ends", "exit")
    return sorted(out)


def timeline_lines(events: list[dict[str, Any]]) -> list[str]:
    """The stages of a cold build, one line each: start, end, seconds, what."""
    return [f"   {a:7.1f} {b:7.1f} {b - a:7.1f}  {what}" for a, b, what in stages(events)]


def report_full(res: dict[str, Any]) -> str:
    """The plain-text summary of a full-profile run (one cold pair, nothing else)."""
    m, cold = res["machine"], res["cold"]
    lines = ["", f"catdog-report benchmark, full profile, {res['started']}",
             f"machine: {m['cpu']}; {m['cores']} cores, {m['memory_gb']} GB",
             f"data: {res['data']['source']}; train {res['data']['train']}, validation "
             f"{res['data']['validation']}, test {res['data']['test']} images",
             f"epochs: {res['epochs']}", "",
             "Cold build (empty caches, fresh project copy) vs plain script, full profile"]
    for i, pair in enumerate(res["pairs"], 1):
        lines.append(f"   pair {i} ({pair['order']}): plain {pair['plain']['wall_s']:.1f} s, "
                     f"catdog {pair['catdog']['wall_s']:.1f} s, ratio {pair['ratio']:.3f}x")
    lines.append(f"   ratio {cold['ratio_median']:.3f}x (target <= {TARGET_RATIO}x: "
                 f"{verdict(cold['ratio_median'] <= TARGET_RATIO)})")
    for pair in res["pairs"]:
        for rec in pair.get("records", []):
            plain = next((r for r in pair["plain_runs"] if r["model"] == rec["model"]), {})
            lines.append(f"   {rec['model']}: {rec['epochs']} epochs, catdog fit "
                         f"{rec['train_seconds']:.1f} s, plain fit "
                         f"{plain.get('train_seconds', float('nan')):.1f} s")
    return "\n".join(lines)


def _probe_lines(res: dict[str, Any]) -> list[str]:
    """Sections 2 and 3: the machine peak and the training throughput."""
    probe = res["probe"]
    lines = [
        f"2. Machine peak: fp32 tf.linalg.matmul {probe['matmul']['n']}x{probe['matmul']['n']}, "
        f"{probe['matmul']['repeats']} timed after 2 warm-up: best "
        f"{probe['matmul']['gflops_best']:.1f} GFLOP/s, median "
        f"{probe['matmul']['gflops_median']:.1f} GFLOP/s (2*n^3 FLOP each)",
        "",
        "3. Training throughput (fit incl. validation, from the cold builds' run records)",
        "   convention: FLOPs of Conv2D/DepthwiseConv2D/Dense only (2 per multiply-add; bias,",
        "   BN, pooling, activations, augmentation ignored); a training image costs 3x forward",
        "   for trainable layers, 1x for frozen ones (model four's MobileNetV2 base); a",
        "   validation image 1x forward. GFLOP/s = epochs * FLOPs per epoch / train_seconds;",
        "   % = of the matmul best. 'best ep' uses the fastest single epoch (no tracing).",
        f"   {'model':<12}{'fwd GF/img':>11}{'train GF/img':>13}{'ep':>3}{'train s':>9}"
        f"{'GFLOP/s':>9}{'% peak':>8}{'best ep':>9}{'plain s':>9}{'plain GF/s':>11}",
    ]
    for name, t in res["throughput"].items():
        frac = t["catdog_fraction_of_peak"]
        lines.append(
            f"   {name:<12}{t['forward_gflop_per_image']:>11.3f}"
            f"{t['train_step_gflop_per_image']:>13.3f}{t['epochs'] or 0:>3}"
            f"{t['catdog_train_seconds_median'] or 0:>9.1f}{t['catdog_gflops_median'] or 0:>9.1f}"
            f"{(frac or 0) * 100:>7.1f}%{t['catdog_best_epoch_gflops_median'] or 0:>9.1f}"
            f"{t['plain_train_seconds_median'] or 0:>9.1f}{t['plain_gflops_median'] or 0:>11.1f}")
    one = res["throughput"]["model_one"]["catdog_fraction_of_peak"]
    lines.append(f"   target model one >= {TARGET_MODEL_ONE_PEAK:.0%} of peak: "
                 f"{verdict(None if one is None else one >= TARGET_MODEL_ONE_PEAK)}")
    peak = probe["matmul"]["gflops_best"]
    variants = list(dict.fromkeys(v["variant"] for v in probe.get("train_step", [])))
    lines += ["   steady training step per model (train_on_batch, batch "
              f"{BATCH_SIZE}, best of 10; one process per setting): ms, GFLOP/s, % of peak",
              "   xla = jit_compile=True; intra2-inter1 = TF threads intra 2 / inter 1; malloc = "
              "glibc's malloc as training sets it",
              "     " + f"{'model':<13}" + "".join(f"{v:>27}" for v in variants)]
    for name in MODEL_NAMES:
        cells = []
        for v in variants:
            r = next((x for x in probe.get("train_step", []) if x.get("model", "model_one")
                      == name and x["variant"] == v), None)
            if r and "error" in r:
                cells.append(f"{'failed (see below)':>27}")
                continue
            cells.append(f"{r['step_seconds'] * 1e3:>9.1f} {r['gflops']:>7.1f} "
                         f"{r['gflops'] / peak:>7.1%}  " if r else f"{'–':>27}")
        lines.append(f"     {name:<13}" + "".join(f"{c:>27}" for c in cells))
    for r in probe.get("train_step", []):
        if "error" in r:
            lines.append(f"   {r['model']} {r['variant']} failed: {r['error'][:160]}")
    lines += ["   where model one's step goes (each stage alone, forward+backward+Adam):"]
    for st in probe.get("model_one_stages", []):
        rate = f"{st['gflops']:6.1f} GFLOP/s" if st["gflops"] else "no counted FLOPs"
        lines.append(f"     {st['stage']:<30}{st['step_ms']:7.1f} ms  {rate}")
    return lines


def _rebuild_lines(res: dict[str, Any]) -> list[str]:
    """Section 4: the rebuilds on the last pair's warm cache."""
    lines: list[str] = []
    lines += ["", "4. Rebuilds on the last pair's warm cache",
              f"   {'step':<24}{'wall s':>8}  {'pages executed':<46}{'models trained':<16}"
              f"{'TF in build':<12}{'kernels':>7}"]
    for key, title in (("warm", "warm (nothing changed)"), ("prose", "prose edit model-two.md"),
                       ("epochs", f"--epochs {CHANGED_EPOCHS[0]}={CHANGED_EPOCHS[1]}")):
        r = res["rebuilds"][key]
        mods = r["build_process_modules"] or {}
        pages = pages_text(r["pages_executed"], len(r["pages_executed"]) + len(r["pages_cached"]))
        lines.append(f"   {title:<24}{r['wall_s']:>8.1f}  {pages:<46}"
                     f"{', '.join(r['models_trained']) or 'none':<16}"
                     f"{'yes' if mods.get('tensorflow') else 'no':<12}{r['kernels_started']:>7}")
    rb = res["rebuilds"]
    n_pages = len(rb["epochs"]["pages_executed"]) + len(rb["epochs"]["pages_cached"])
    lines += [
        f"   warm wall target <= {TARGET_WARM_SECONDS} s: "
        f"{verdict(rb['warm']['wall_s'] <= TARGET_WARM_SECONDS)}; no kernel started: "
        f"{verdict(rb['warm']['kernels_started'] == 0)}",
        f"   prose edit ({rb['prose']['edit']}): no page re-executed (the cached outputs "
        f"take the new prose): {verdict(rb['prose']['pages_executed'] == [])}; wall target "
        f"<= {TARGET_PROSE_SECONDS} s: {verdict(rb['prose']['wall_s'] <= TARGET_PROSE_SECONDS)}",
        f"   {CHANGED_EPOCHS[0]} alone retrained: "
        f"{verdict(rb['epochs']['models_trained'] == [CHANGED_EPOCHS[0]])}; pages re-executed: "
        f"{len(rb['epochs']['pages_executed'])} of {n_pages} "
        f"({', '.join(rb['epochs']['pages_executed']) or 'none'}) in "
        f"{rb['epochs']['wall_s']:.1f} s",
        "",
    ]
    return lines


def report(res: dict[str, Any]) -> str:
    """The plain-text table."""
    m, probe = res["machine"], res.get("probe")
    load_start = ", ".join(f"{x:.2f}" for x in m["loadavg_start"])
    load_end = ", ".join(f"{x:.2f}" for x in m.get("loadavg_end", ()))
    lines = [
        "",
        f"catdog-report benchmark ({res['mode']}), {res['started']}",
        f"machine: {m['cpu']}; {m['cores']} cores ({m['cores_usable']} usable), "
        f"{m['memory_gb']} GB; load average at start {load_start}, at end {load_end}",
        (f"software: Python {probe['python']}, TensorFlow {probe['tensorflow']}, Keras "
         f"{probe['keras']}; TF threads intra {probe['intra_op_threads']} / inter "
         f"{probe['inter_op_threads']} (0 = TF default)") if probe else "software: (no probe)",
        f"data: {res['data']['source']}; train {res['data']['train']}, validation "
        f"{res['data']['validation']}, test {res['data']['test']} images",
        f"weights: {res['weights']}",
        f"epochs (one, two, three, four): {', '.join(str(v) for v in res['epochs'].values())}; "
        f"image size {IMAGE_SIZE}, batch {BATCH_SIZE}",
        "",
        "1. Cold build (empty caches, fresh project copy) vs plain script",
        f"   {'pair':<5}{'order':<16}{'plain s':>9}{'catdog s':>10}{'ratio':>8}",
    ]
    for i, pair in enumerate(res["pairs"], 1):
        lines.append(f"   {i:<5}{pair['order']:<16}{pair['plain']['wall_s']:>9.1f}"
                     f"{pair['catdog']['wall_s']:>10.1f}{pair['ratio']:>7.2f}x")
    cold = res["cold"]
    lines += [
        f"   {'median':<21}{cold['plain_wall_median']:>9.1f}{cold['catdog_wall_median']:>10.1f}"
        f"{cold['ratio_median']:>7.2f}x   target <= {TARGET_RATIO}x: "
        f"{verdict(cold['ratio_median'] <= TARGET_RATIO)}",
        f"   the plain script's figures took {cold['plain_figures_seconds_median']:.1f} s "
        f"(median); without them the ratio is {cold['ratio_without_plain_figures_median']:.2f}x",
        f"   cold build pages executed: {cold['pages_executed']}; models trained: "
        f"{cold['models_trained']}",
        "   the last cold build's timeline (s from its start; from its log lines):",
        f"   {'start':>7} {'end':>7} {'secs':>7}  stage",
        *timeline_lines(cold.get("timeline", [])),
        "",
    ]
    if probe:
        lines += _probe_lines(res)
    if res.get("rebuilds"):
        lines += _rebuild_lines(res)
    lines += [
        "5. Peak memory: process tree total RSS (psutil, every 0.2 s) / largest single process",
        "   max RSS (/usr/bin/time -v; includes reaped kernels)",
        f"   {'run':<28}{'tree MB':>9}{'largest MB':>12}{'procs':>7}",
    ]
    for r in res["memory"]:
        lines.append(f"   {r['label']:<28}{mb(r['peak_tree_rss_mb']):>9}"
                     f"{mb(r['largest_process_maxrss_mb']):>12}{r['peak_processes']:>7}")
    if res.get("precision"):
        lines += ["", "6. float32 vs bf16 (Keras mixed_bfloat16), quick profile, seeds "
                  f"{res['precision_seeds']}: test accuracy mean ± sd over seeds; median epoch "
                  "time after the first; the steady step from section 3's probe",
                  f"   {'model':<12}{'fp32 acc':>16}{'bf16 acc':>16}{'fp32 ep s':>11}"
                  f"{'bf16 ep s':>11}{'fp32 step ms':>14}{'bf16 step ms':>14}"]
        steps = {(x.get("model"), x["variant"]): x for x in probe.get("train_step", [])}
        for name, per in res["precision"].items():
            cells = [_acc(per.get("float32")), _acc(per.get("bf16")),
                     _epoch(per.get("float32")), _epoch(per.get("bf16")),
                     _step(steps.get((name, "default"))), _step(steps.get((name, "bf16")))]
            lines.append(f"   {name:<12}{cells[0]:>16}{cells[1]:>16}{cells[2]:>11}{cells[3]:>11}"
                         f"{cells[4]:>14}{cells[5]:>14}")
        for precision, error in res.get("precision_errors", {}).items():
            lines.append(f"   the {precision} build failed (the models before it are above): "
                         f"{error[:200]}")
    if res.get("parallel"):
        par = res["parallel"]
        lines += ["", f"7. {par['runs']} independent runs (every model, quick profile, fresh "
                  f"caches): one by one {par['one_by_one_seconds']:.1f} s; in "
                  f"{par['workers']} worker processes {par['workers_seconds']:.1f} s "
                  f"({par['speedup']:.2f}x); same run keys: {par['same_keys']}; same "
                  f"histories: {par['same_histories']} (largest difference "
                  f"{par['max_history_difference']:.2g})"]
    lines += [f"WARNING: {w}" for w in res.get("warnings", [])]
    budget = res.get("budget", {})
    lines += [f"SKIPPED {why}" for why in budget.get("skipped", [])]
    lines += ["", f"total benchmark time {res['bench_seconds'] / 60:.1f} min (budget "
              f"{budget.get('minutes', '?')} min: "
              f"{'within' if budget.get('within') else 'PAST IT'}); results in {res['out']}", ""]
    return "\n".join(lines)
