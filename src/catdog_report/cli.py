"""The command line: the only place errors become exit codes."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import display, environment, progress
from .config import STRATEGIES, Settings
from .display import summary_lines
from .environment import Environment
from .errors import CatdogError, ConfigError, Interrupted

log = logging.getLogger("catdog_report")


def _epochs(values: Sequence[str]) -> dict[str, int]:
    """NAME=N pairs; the names are checked against the study by Settings."""
    out = {}
    for item in values:
        name, sep, number = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--epochs {item!r}: expected MODEL=N, e.g. --epochs "
                              "<a model of study.yml>=3")
        try:
            out[name] = int(number)
        except ValueError:
            raise ConfigError(f"--epochs {item!r}: {number!r} is not a whole number") from None
    return out


def _seeds(values: Sequence[str]) -> dict[str, Any]:
    """--seeds N and MODEL=N items: the seeds of every model and per-model counts (the
    names are checked against the study by Settings)."""
    count, per_model = None, {}
    for item in values:
        name, sep, number = item.rpartition("=")
        if sep and not name:
            raise ConfigError(f"--seeds {item!r}: expected N or MODEL=N, e.g. --seeds 3")
        try:
            value = int(number)
        except ValueError:
            raise ConfigError(f"--seeds {item!r}: {number!r} is not a whole number; expected N "
                              "or MODEL=N") from None
        if sep:
            per_model[name] = value
        elif count is not None:
            raise ConfigError(f"--seeds {item!r}: give one N for every model (it was given "
                              f"{count} already) and MODEL=N for the others")
        else:
            count = value
    return {"seeds": count, "model_seeds": per_model}


def _output_options(p: argparse.ArgumentParser, env: Environment, defaults: bool) -> None:
    """What the terminal shows: before the command (with defaults) or after it."""
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    p.add_argument("-v", "--verbose", action="store_true", default=default(False),
                   help="everything: debug logs, TensorFlow's and MkDocs' own output, "
                        "tracebacks")
    p.add_argument("-q", "--quiet", action="store_true", default=default(False),
                   help="only errors and the final line")
    p.add_argument("--progress", choices=display.MODES,
                   default=default(env.progress or "auto"),
                   help="live: a live display (rich); plain: plain lines (no control "
                        "characters); auto (default, or CATDOG_PROGRESS): live on a terminal")
    p.add_argument("--progress-every", type=float, default=default(display.PLAIN_EVERY),
                   metavar="SECONDS", help="plain lines: at most one progress line per "
                   f"SECONDS inside an epoch (default {display.PLAIN_EVERY:.0f})")


def parser(env: Environment | None = None) -> argparse.ArgumentParser:
    """The argument parser; its defaults come from env (default: the CATDOG_* variables)."""
    env = environment.read() if env is None else env
    p = argparse.ArgumentParser(prog="catdog-report", description=__doc__)
    _output_options(p, env, defaults=True)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="execute the pages and publish site/")
    _build_options(b, env)
    b.add_argument("--keep-going", action="store_true",
                   help="execute every page even if one fails, then fail with a summary")
    s = sub.add_parser("serve", help="build, serve site/ with live reload, and re-execute "
                       "what changed on every save (Ctrl-C stops)")
    _build_options(s, env)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    for command in (b, s):
        _output_options(command, env, defaults=False)
    c = sub.add_parser("check-site", help="check every link and image in site/ resolves")
    c.add_argument("site", type=Path, nargs="?", default=Path("site"))
    g = sub.add_parser("demo-data", help="write a synthetic profile's data set (drawn by the "
                       "study's data.generator) to a folder")
    g.add_argument("folder", type=Path)
    g.add_argument("--project", type=Path, default=Path.cwd(),
                   help="project folder (the one holding study.yml)")
    g.add_argument("--profile", help="a synthetic profile of study.yml (default: the first)")
    g.add_argument("--seed", type=int, default=0, help="seeds every image (default 0)")
    g.add_argument("--image-size", type=int, default=160, help="square size in pixels")
    f = sub.add_parser("freeze", help="find or train every run of the build and write what its "
                       "pages need of them to frozen/ beside study.yml, to commit")
    _build_options(f, env)
    f.add_argument("--with-weights", action="store_true",
                   help="freeze the trained weights too (the Grad-CAM maps need them; tens of "
                        "MB per model): without them a build from the freeze shows no maps")
    f.add_argument("--prune", action="store_true",
                   help="remove this profile's frozen runs that this build no longer has")
    _output_options(f, env, defaults=False)
    sub.add_parser("clean", help="remove site/, build/ and the caches in .cache/")
    return p


def _build_options(b: argparse.ArgumentParser, env: Environment) -> None:
    """The options of a build, shared by build and serve (an option wins over its variable,
    the variable over the default)."""
    b.add_argument("--profile", default=env.profile or "full",
                   help="a profile of study.yml (default full, or CATDOG_PROFILE)")
    b.add_argument("--data-dir", type=Path, help="local copy of the study's data set "
                   "(else CATDOG_DATA_DIR, Keras's cache, then the study's URL)")
    b.add_argument("--weights", type=Path, help="local no-top .h5 of the base a model declares "
                   "(else CATDOG_WEIGHTS, then Keras's imagenet weights)")
    b.add_argument("--cache-dir", type=Path,
                   help="run and page caches (default .cache/, or CATDOG_CACHE_DIR)")
    b.add_argument("--project", type=Path, default=Path.cwd(), help="project folder")
    b.add_argument("--epochs", nargs="*", default=[], metavar="MODEL=N",
                   help="override a model's epochs (a model of study.yml), e.g. NAME=3")
    b.add_argument("--seeds", nargs="+", default=[], metavar="N|MODEL=N",
                   help="train each model with N seeds (seed, seed+1, ...), and a model with "
                        "its own MODEL=N (e.g. --seeds 3 NAME=1); default: the profile's "
                        "seeds in study.yml, else 1")
    b.add_argument("--precision", default="float32",
                   help="float32 (default) or bf16 (Keras's mixed_bfloat16 policy)")
    b.add_argument("--workers", type=int, default=env.workers or 1,
                   help="worker processes training runs at once on this machine: the same as "
                        "--cluster local:N (default 1: one by one; or CATDOG_WORKERS)")
    b.add_argument("--cluster", default=env.cluster,
                   metavar="ADDRESS",
                   help="train the runs the cache lacks on a Dask cluster: local (one worker "
                        "process per core), local:N, or a running scheduler's address such as "
                        "tcp://host:8786 (or CATDOG_CLUSTER); each run keeps its own thread "
                        "count, so the results are the same as one by one")
    b.add_argument("--seed", type=int, default=0,
                   help="seeds weights, shuffling and the split (default 0, as the walkthrough)")
    b.add_argument("--image-size", type=int, default=160, help="square input size in pixels")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--strategy", default="none", help=f"one of {', '.join(STRATEGIES)}")
    b.add_argument("--jobs", "-j", type=int, default=env.jobs or 2,
                   help="pages executed at once, each in its own kernel (default 2, or "
                        "CATDOG_JOBS)")
    b.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                   help="seconds one cell of a page may run in a build (default: pages: "
                        "cell_timeout: in study.yml, else 600); a cell that runs longer "
                        "stops the build, naming the page and the cell")
    b.add_argument("--remote-cache", default=env.remote_cache, metavar="URL",
                   help="a run cache shared by a team: a path on a shared disk or an fsspec "
                   "URL (s3://, gs://, ...; or CATDOG_REMOTE_CACHE); runs it holds are pulled "
                   "instead of trained, runs trained here are pushed")
    b.add_argument("--engine", default=env.engine or "mkdocs",
                   help="site engine: mkdocs (Material for MkDocs, the default) or zensical "
                        "(its successor; or CATDOG_ENGINE)")


def _settings(args: argparse.Namespace) -> Settings:
    """The build's settings from the shared build options, every path checked up front (one
    clear line before anything is written)."""
    from .paths import check_build_paths, given_paths

    given = given_paths({"cache_dir": args.cache_dir, "data_dir": args.data_dir,
                         "weights": args.weights})
    settings = Settings.from_mapping({
        "profile": args.profile, "project_dir": args.project.resolve(),
        "data_dir": args.data_dir, "weights": args.weights,
        "cache_dir": given["cache_dir"][0] if "cache_dir" in given else None,
        "epochs": _epochs(args.epochs), "seed": args.seed, "strategy": args.strategy,
        "image_size": args.image_size, "batch_size": args.batch_size,
        "keep_going": getattr(args, "keep_going", False), "jobs": args.jobs,
        "engine": args.engine, **_seeds(args.seeds), "precision": args.precision,
        "workers": args.workers, "cluster": args.cluster, "cell_timeout": args.cell_timeout,
        "remote_cache": args.remote_cache})
    check_build_paths(settings, given)
    if settings.remote_cache:
        from .remote import remote

        remote(settings.remote_cache)  # an unknown protocol fails here, in one line
    return settings


def cmd_build(args: argparse.Namespace) -> int:
    """Build the site."""
    from .build import build

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind like Ctrl-C
    settings = _settings(args)
    result = build(settings)
    shown = args.display
    if not args.quiet:
        for line in summary_lines(result):
            shown.line(line)
    executed = [p.name for p in result.pages if not p.cached]
    shown.final(f"built {len(result.pages)} pages in {result.seconds:.1f} s ({len(executed)} "
                f"executed: {', '.join(executed) or 'none'}); site "
                + ("published to " + str(settings.site_dir) if result.published
                   else "unchanged"))
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    """Freeze the runs of the build."""
    from .build import freeze_build

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind like Ctrl-C
    settings = _settings(args)
    frozen = freeze_build(settings, args.with_weights, args.prune)
    written = sum(1 for _, changed in frozen if changed)
    args.display.final(f"froze {len(frozen)} run(s) in {frozen[0][0].parent if frozen else '-'} "
                       f"({written} written, {len(frozen) - written} unchanged"
                       f"{', with weights' if args.with_weights else ', without weights'}); "
                       "commit that folder")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Build, serve with live reload and rebuild on every save until Ctrl-C."""
    from .serve import serve

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port}: expected a port between 1 and 65535")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind like Ctrl-C
    settings = _settings(args)
    try:
        serve(settings, args.host, args.port)
    except KeyboardInterrupt:  # Interrupted mid-build, or Ctrl-C while waiting for a save
        log.info("stopped serving: no kernel is left running and the port is free")
    return 0


def cmd_check_site(args: argparse.Namespace) -> int:
    """Check links and images in a built site."""
    from .site import broken_links, over_budget, page_weights

    if not (args.site / "index.html").is_file():
        raise CatdogError(f"{args.site} holds no built site (no index.html); run "
                          "`catdog-report build` first")
    broken = broken_links(args.site)
    for line in broken:
        log.error("broken link: %s", line)
    weights = page_weights(args.site)
    for name, size in weights.items():
        log.info("page weight %-12s %9s bytes", name, f"{size:,}")
    heavy = over_budget(weights)
    for line in heavy:
        log.error("page over its weight budget: %s", line)
    pages = len(list(args.site.rglob("*.html")))
    log.info("%s: %d HTML files, %d broken links, %d pages over budget", args.site, pages,
             len(broken), len(heavy))
    return 1 if broken or heavy else 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Generate a synthetic profile's data set with the study's generator."""
    from . import demo_data
    from .study import STUDY_FILE, load

    study = load(args.project / STUDY_FILE)
    profile = args.profile or next(
        (p.name for p in study.profiles.values() if p.synthetic), None)
    if profile is None:
        raise ConfigError(f"{study.path} declares no synthetic profile; add one (`synthetic: "
                          "true`) with a data.generator to draw its images")
    settings = Settings(profile=profile, project_dir=args.project, seed=args.seed,
                        image_size=args.image_size)
    if not settings.profile_spec.synthetic:
        raise ConfigError(f"profile {profile!r} of {study.path} uses real data; name a "
                          "synthetic profile (`synthetic: true`) with --profile")
    demo_data.generate_for(settings, args.folder)
    log.info("wrote the synthetic data set of profile %s to %s", profile, args.folder)
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove generated folders."""
    for name in ("site", "build", ".cache"):
        shutil.rmtree(Path.cwd() / name, ignore_errors=True)
    return 0


COMMANDS: dict[str, Any] = {"build": cmd_build, "serve": cmd_serve,
                            "check-site": cmd_check_site, "freeze": cmd_freeze,
                            "demo-data": cmd_demo_data, "clean": cmd_clean}


def run(argv: Sequence[str] | None = None) -> None:
    """The console script: main(), then the exit code, without the interpreter's last
    garbage collection over every object TensorFlow and Keras made (about 560,000 after a
    cold quick build: 1.5 s of its exit, measured on a 2-core AMD EPYC); gc.freeze() puts
    them beyond it, and the process's memory goes back to the system at its exit anyway."""
    import gc

    code = main(argv)
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        env = environment.read()
    except ConfigError as exc:
        sys.stderr.write(f"catdog-report: error: {exc}\n")
        return exc.exit_code
    args = parser(env).parse_args(argv)
    if args.verbose and args.quiet:
        sys.stderr.write("catdog-report: error: -v and -q contradict each other; give one\n")
        return 2
    timed = args.command == "serve"  # a long session: say when things happened
    args.display = shown = display.make(args.verbose, args.quiet, timed, mode=args.progress,
                                        every=args.progress_every)
    root, own = logging.getLogger(), logging.getLogger("catdog_report")
    levels = root.level, own.level
    root.addHandler(shown)
    root.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    own.setLevel(progress.TICK)  # progress events reach the display, which filters
    logging.captureWarnings(True)  # Keras's warnings: shown with -v
    env.warn_unknown()
    t0 = time.perf_counter()
    try:
        return COMMANDS[args.command](args)
    except CatdogError as exc:
        shown.close()
        if args.verbose:
            traceback.print_exc()
        sys.stderr.write(f"catdog-report: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:  # Interrupted (a signal during the pages), or a plain Ctrl-C
        pass
    finally:
        shown.close()
        root.removeHandler(shown)
        root.setLevel(levels[0])
        own.setLevel(levels[1])
        logging.captureWarnings(False)
    sys.stderr.write(f"catdog-report: interrupted after {time.perf_counter() - t0:.0f} s; "
                     "caches and site/ are unchanged by the unfinished step\n")
    return Interrupted.exit_code


if __name__ == "__main__":
    sys.exit(main())
