"""``python -m models``: build datasets, train studies, render and benchmark the zoo."""

from __future__ import annotations

import argparse
import io
import json
import logging
from pathlib import Path

from common.cli import run_verb, setup_logging

log = logging.getLogger("models")

DATASET_AUDIO = "dataset audio"  # the kind of output `dataset --write` marks its folder with
# Not a --device choice list: checking it imports torch, which `--help` should not wait for.
_DEVICE_NOTE = ("The device is not part of the run config or id (results do not depend on it beyond float "
                "tolerance), so a run resumes on another device; checkpoints hold CPU tensors")
_RESOLVED_ONLY = {"run_id", "git_commit", "sample_rate", "knob_names", "latency_samples", "effective_training"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m models",
        description="Earshot model zoo: built-in devices and user recordings, LSTM teachers and "
        "students, knowledge distillation, studies, rendering and benchmarks.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only, hide progress bars")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("study", help="train every missing run of a study YAML and write runs.csv + comparison",
                         description="Expand a study file (datasets × teachers × students × recipes × seeds), "
                         "train only runs without metrics.json (interrupted runs resume) — the recipes' runs and "
                         "the budget-matched controls they ask for (controls.csv: the student trained alone for kd, "
                         "the fp32 source fine-tuned for the same epochs for qat/kd_qat, each width trained alone "
                         "for slimmable) — then write runs.csv, comparison.csv/.png, quantization.csv, "
                         "width_sweep.csv/.png and pareto.png in the study folder; last, with all training "
                         "finished, the measure phase times every run alone (see `measure`: cost.csv). One process per "
                         "study folder: a second one fails at once, naming the first (study.lock).")
    p.add_argument("file", type=Path, help="study YAML, e.g. models/studies/demo.yaml")
    p.add_argument("--out", type=Path, default=None,
                   help="study folder (default: the file's output_dir or results/zoo/<name>)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done; train nothing")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="train up to N independent runs at once in separate processes (one torch thread "
                   "each; a run waits for its teacher and fp32 source). Default 1")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run each missing run as a task on the Ray cluster at ADDRESS (e.g. 10.0.0.5:6379, "
                   "or 'auto' for the cluster this machine belongs to, or 'local' to start one here); "
                   "all nodes must see the study folder at the same path. Results land in the same runs.csv")
    p.add_argument("--device", default="cpu", metavar="auto|cpu|cuda",
                   help="where runs train and render their test split: cpu (default), cuda (refused when torch "
                   "sees no GPU) or auto (cuda when torch sees one, else cpu); every --jobs worker uses it. "
                   "runs.csv's real-time factors come from the measure phase, on the CPU. " + _DEVICE_NOTE)

    p = verbs.add_parser("measure", help="time every run of a study alone: cost.csv, and runs.csv's real-time factors",
                         description="The measure phase (also the last step of `study`): with the study folder "
                         "locked, so that no study process trains meanwhile, time every run runs.csv lists on one "
                         "thread, one run at a time (N rounds of every run in turn, so that a change of load falls "
                         "on all), after a warm-up: offline rendering of 4 s and streaming of 2 s "
                         "in 128-sample blocks of a fixed noise signal. Writes cost.csv beside runs.csv "
                         "(median, min and max real-time factor of each, the CPU model, the 1-minute load average "
                         "before and after, and busy: that load was above the core count) and puts the medians into "
                         "runs.csv's rtf_offline and rtf_stream and the figures drawn from them.")
    p.add_argument("study", type=Path, metavar="STUDY_FILE_OR_DIR",
                   help="study YAML (its folder: output_dir or results/zoo/<name>) or a study folder")
    p.add_argument("--repeats", type=int, default=5, metavar="N",
                   help="timed rounds per run (default 5; the figures are their median, min and max)")

    p = verbs.add_parser("train", help="train one run from a run config (or resume a run folder)",
                         description="Train a single run. CONFIG is a YAML/JSON run config (keys: dataset, "
                         "model, recipe, variant, teacher, teacher_run, distill, training, seed) or an "
                         "existing run folder, whose config.json is reused.")
    p.add_argument("config", type=Path, help="run config file, or a run folder to continue")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder that holds run folders (default: the run folder's parent, or results/zoo/adhoc/runs)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's last.pt (the same result as an uninterrupted run)")
    p.add_argument("--device", default="cpu", metavar="auto|cpu|cuda",
                   help="where the run trains and renders its test split: cpu (default), cuda (refused when "
                   "torch sees no GPU) or auto (cuda when torch sees one, else cpu); streaming is measured on "
                   "the CPU. " + _DEVICE_NOTE)

    p = verbs.add_parser("dataset", help="build or validate a dataset and print what it holds",
                         description="Build a dataset from a built-in device, load the user's recordings "
                         "(NAM, Wright or conditioned layout) or render a .nam capture, validate it and print its "
                         "splits, knobs and latency: for recordings the estimate (the largest delay that loses none "
                         "of the wet signal's dependence on the dry one) and its confidence.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--device", help="built-in device preset (see `python -m models devices`)")
    src.add_argument("--path", type=Path, help="folder with dry/wet recordings")
    src.add_argument("--teacher-nam", type=Path, metavar="FILE",
                     help=".nam capture whose render of the built-in programme (or --dry) is the target")
    p.add_argument("--latency-samples", type=int, default=None, metavar="N",
                   help="recordings: the wet files' latency, instead of the estimate (which is still logged)")
    p.add_argument("--slim", type=float, default=None, metavar="V",
                   help="--teacher-nam: NAM's slim value (0 to 1): a SlimmableContainer's level or a slimmable "
                   "0.7 WaveNet's channels, as the plug-in's slim control")
    p.add_argument("--width", type=float, default=None, metavar="W",
                   help="--teacher-nam: the fraction of channels kept: a slimmable 0.7 WaveNet's slim value, or "
                   "the zoo's cut of a 0.5.x WaveNet or NAM LSTM (as export --width)")
    p.add_argument("--dry", action="append", default=None, metavar="WAV_OR_FOLDER",
                   help="--teacher-nam: the user's dry audio instead of the programme (repeatable)")
    p.add_argument("--layout", choices=["auto", "nam", "wright", "conditioned"], default="auto",
                   help="recordings layout (default: detect)")
    p.add_argument("--sample-rate", type=int, default=48000, help="built-in devices and captures: sample rate in Hz")
    p.add_argument("--duration-s", type=float, default=180.0,
                   help="built-in devices and captures: programme length in s")
    p.add_argument("--seed", type=int, default=0, help="built-in devices and captures: seed of the source material")
    p.add_argument("--resample", action="store_true",
                   help="recordings and --dry files: resample a mismatched rate instead of refusing")
    p.add_argument("--channel", type=int, default=None, help="recordings: channel to use from multichannel files")
    p.add_argument("--write", type=Path, default=None,
                   help="write each split's input/target WAVs into this new folder (a folder this command wrote "
                   "before is replaced; one holding anything else is refused)")

    verbs.add_parser("devices", help="list the built-in device presets",
                     description="List the built-in virtual analog devices and their knobs.")

    p = verbs.add_parser("render", help="process a WAV file with a trained run, a .nam file or an export",
                         description="Render INPUT through MODEL (offline, chunked) and write OUTPUT as 24-bit WAV "
                         "(--float: 32-bit float) at the model's sample rate. MODEL is a run folder (its best "
                         "checkpoint), a Neural Amp Modeler .nam file (rendered as NAM's engine renders it) or an "
                         "Earshot export (<name>.pt or its <name>.json manifest, see `export`).")
    p.add_argument("model", type=Path, metavar="MODEL",
                   help="run folder (holding checkpoint.pt), .nam file, or export (<name>.pt / <name>.json)")
    p.add_argument("input", type=Path, help="dry mono WAV at the model's sample rate")
    p.add_argument("output", type=Path, help="where to write the processed WAV")
    p.add_argument("--slim", type=float, default=None, metavar="V",
                   help="a .nam with slim levels: NAM's slim value (0 to 1) as the plug-in's slim control, "
                   "choosing a SlimmableContainer's submodel or a slimmable 0.7 WaveNet's channels (default: "
                   "the largest, as NAM plays it)")
    p.add_argument("--width", type=float, default=None, metavar="W",
                   help="the fraction of channels kept: a slimmable 0.7 WaveNet's slim value; a 0.5.x WaveNet "
                   ".nam or NAM LSTM cut as export --width cuts (the first channels of every weight); a slimmable "
                   "export: one of its manifest's widths.allowed; default full width")
    p.add_argument("--float", action="store_true", dest="float_wav",
                   help="write 32-bit float WAV, keeping samples beyond full scale (24-bit clips them)")
    p.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                   help="knob value for conditioned models, e.g. --knob drive=0.7 (repeatable)")
    p.add_argument("--device", default="cpu", metavar="auto|cpu|cuda",
                   help="where the model runs: cpu (default), cuda (refused when torch sees no GPU) or auto "
                   "(cuda when torch sees one, else cpu); the output matches the CPU's within float tolerance")

    p = verbs.add_parser("bench", help="measure size, multiply-adds, training, rendering and streaming speed",
                         description="Print, per preset architecture: parameters, multiply-adds per sample, "
                         "training throughput at batch 8 × 2048 with 1 and 2 threads (train); offline render "
                         "real-time factors (chunked and whole-file) and the chunked/whole-file speed-up with "
                         "its max abs difference (render); streaming real-time factor per block size "
                         "64/128/256/512 on one thread for the LSTM students and teacher, the WaveNet presets, "
                         "the slimmable WaveNet at 25/50/75/100 % width and 8-/4-bit quantized models, with "
                         "each row's multiply-add rate as a fraction of a measured single-thread matmul peak, "
                         "and the streaming targets checked (streaming). Prints the CPU model, versions and "
                         "machine load. The full run takes about 10 minutes on 2 cores; --quick about 3.")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed repetitions per figure; the median is shown (streaming uses at least 5)")
    p.add_argument("--only", action="append", choices=("train", "render", "streaming"), default=None,
                   metavar="SECTION", help="run only this section: train, render or streaming (repeatable; "
                   "default all)")
    p.add_argument("--quick", action="store_true",
                   help="shorter run: 1 s streamed per figure, at most 5 s rendered, rendering and training "
                   "for S-64-8 (and the teacher's training) only, no chunking sweep")
    p.add_argument("--audio-s", type=float, default=10.0, help="seconds of audio rendered per repetition")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="trained S-64-8 run folder for the chunked-vs-whole difference "
                   "(default: the demo study's, when trained)")

    p = verbs.add_parser("export", help="export a trained run: self-describing .pt + JSON manifest, or NAM .nam",
                         description="Export the best checkpoint of RUN_DIR so it loads without the run folder "
                         "or the training config. pt: <name>.pt (network config, sample rate, knob names, "
                         "weights; a quantized run's bit-packed integers and per-row scales) and <name>.json "
                         "(architecture, parameters, multiply-adds, bits, widths, sample rate, loudness on a "
                         "fixed test signal, latency, test metrics, provenance with the .pt's sha256); load it "
                         "with models.export.bundle.load_export. nam: Neural Amp Modeler's .nam (format "
                         "--nam-version, with NAM's loudness and gain metadata), for WaveNets and NAM LSTMs; "
                         "--nam-container adds a slimmable "
                         "WaveNet's widths as one SlimmableContainer file. Files are written under temporary names "
                         "and renamed when complete.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="trained run folder (holding checkpoint.pt), or a study folder (holding runs.csv) with "
                   "--select or --all")
    p.add_argument("--select", default=None, metavar="COLUMN=VALUE[,...]",
                   help="with a study folder: the one run whose runs.csv row has these values, e.g. "
                   "recipe=slimmable,width=1 or model=NAM-LSTM-1x16,recipe=ptq,bits=8 (numbers compare as numbers)")
    p.add_argument("--all", action="store_true", dest="every",
                   help="with a study folder: export every run (those --select matches, if given), each named by "
                   "its run id; a run the format cannot hold is listed, not fatal")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder to write the files into (created if missing; files of the same name are replaced)")
    p.add_argument("--format", choices=["pt", "nam", "both"], default="pt", dest="format",
                   help="pt (default): .pt + .json manifest, works for every run; nam: a .nam file, for "
                   "WaveNets without knobs and NAM LSTMs (arch nam_lstm); an LSTM stack is refused: its input skip has no "
                   "NAM equivalent; "
                   "both: all three files, the manifest naming the .nam — for a network NAM cannot hold, "
                   "the .pt and .json, and a line saying why there is no .nam")
    p.add_argument("--width", type=float, default=None, metavar="W",
                   help="export the network cut to this fraction of its channels (0 < W <= 1, at least one "
                   "channel of the widest layer; models.nets.slimmable.slim), meant for slimmable runs; quantized "
                   "integers are cut with their weights. Default: the full network")
    p.add_argument("--name", default=None,
                   help="base file name without extension (default: the run id, with _w<percent> at a width "
                   "below 1)")
    p.add_argument("--nam-version", choices=["0.5.4", "0.7.0"], default="0.5.4", dest="nam_version",
                   help="the .nam format. 0.5.4 (default): loads in NAM <= 0.12, in every NAM plug-in release "
                   "and in NAM-compatible players, the widest reach; 0.7.0: what NAM 0.13 writes and its Python "
                   "package needs (it refuses 0.5.x WaveNets), loads in plug-ins built on NeuralAmpModelerCore "
                   ">= 0.4.1. LSTM files load in NAM 0.12 and 0.13 in either version")
    p.add_argument("--nam-container", action="store_true", dest="nam_container",
                   help="also write <name>_slimmable.nam: a slimmable WaveNet run's widths (its slimmable "
                   "settings' widths, and 1.0) as one SlimmableContainer (format 0.7.0; NAM plug-ins pick the "
                   "smallest width >= their slim value; NAM's Python package reads no containers). Only for "
                   "full-width slimmable WaveNet runs, with --format nam or both")
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    setup_logging(args.verbose, args.quiet)


def _cmd_study(args: argparse.Namespace) -> int:
    from models.errors import ConfigError
    from models.processes import study_lock
    from models.studies.runs import is_complete
    from models.studies.study import expand, load_study, run_study, study_dir

    study = load_study(args.file)
    out_dir = args.out or study_dir(study)
    try:
        runs = expand(study)
    except ConfigError as exc:  # a run the study's settings make impossible
        raise ConfigError(f"{args.file}: {exc}") from None
    if args.dry_run:
        for run in runs:
            done = is_complete(out_dir / "runs" / run.run_id)
            print(f"{'done ' if done else 'to do'}  {run.run_id}")
        return 0
    if args.jobs < 1:
        raise ConfigError(f"--jobs: expected >= 1, found {args.jobs}")
    from models.training.compute import resolve_device

    resolve_device(args.device)  # refused now, not in the first run after the lock is taken

    def on_run(run, status):
        if status != "skip":
            print(f"{status:>6}  {run.run_id}", flush=True)

    # Locked before anything is printed: a second process on the folder fails at once.
    with study_lock(out_dir):
        todo = sum(not is_complete(out_dir / "runs" / r.run_id) for r in runs)
        print(f"study {study.name}: {len(runs)} runs, {todo} to train, in {out_dir}")
        frame = run_study(study, out_dir, progress=not args.quiet, on_run=on_run, jobs=args.jobs,
                          ray_address=args.ray, device=args.device)
        # Serially, after all training: real-time factors timed while a worker trained are unfair.
        costs = _measure(out_dir, 5, args.quiet).set_index("run_id")
        frame["rtf_offline"] = frame["run_id"].map(costs["rtf_offline_median"])
        frame["rtf_stream"] = frame["run_id"].map(costs["rtf_stream_median"])
    shown = ["run_id", "bits", "width", "params", "bytes", "macs_per_sample", "epochs", "test_esr", "test_mrstft",
             "rtf_offline", "rtf_stream"]
    with _pandas_display():
        print(frame[shown].to_string(index=False))
    table_path = out_dir / "comparison.csv"
    import pandas as pd

    from models.studies.paired import describe

    table = pd.read_csv(table_path)
    if not table.empty:
        table["improvement (% of the error), 95 % CI, verdict"] = [
            describe(r.improvement_pct, r.improvement_ci95_low_pct, r.improvement_ci95_high_pct, r.seeds, r.verdict)
            for r in table.itertuples()]
        with _pandas_display(), pd.option_context("display.max_colwidth", 80):
            print("\nDistilled vs non-distilled, paired by seed:")
            print(table.set_index(["dataset", "teacher", "variant", "layers", "metric"])
                  .iloc[:, -1:].to_string())
    quantization_path = out_dir / "quantization.csv"
    if quantization_path.exists():
        quantized = pd.read_csv(quantization_path)
        quantized["ESR change (%), 95 % CI, verdict"] = [
            describe(r.esr_change_pct, r.esr_change_ci95_low_pct, r.esr_change_ci95_high_pct, r.seeds, r.verdict)
            for r in quantized.itertuples()]
        with _pandas_display(), pd.option_context("display.max_colwidth", 80):
            print("\nQuantized vs each control (same training budget where the control says so), paired by seed:")
            print(quantized[["dataset", "model", "variant", "control", "ESR change (%), 95 % CI, verdict"]]
                  .to_string(index=False))
    sweep_path = out_dir / "width_sweep.csv"
    if sweep_path.exists():
        sweep = pd.read_csv(sweep_path)
        sweep = sweep[sweep["width"] < 1.0].copy()  # the compressed widths
        # ESR differences are small fractions: in thousandths (‰ of ESR) they read like the other columns.
        sweep["ESR slimmed − alone (×1000), 95 % CI, verdict"] = [
            describe(1000 * r.esr_difference, 1000 * r.esr_difference_ci95_low, 1000 * r.esr_difference_ci95_high,
                     r.seeds, r.verdict, unit="") for r in sweep.itertuples()]
        if not sweep.empty:
            with _pandas_display(), pd.option_context("display.max_colwidth", 80):
                print("\nSlimmed width vs the same width trained alone, paired by seed:")
                print(sweep[["dataset", "model", "variant", "width", "control",
                             "ESR slimmed − alone (×1000), 95 % CI, verdict"]].to_string(index=False))
    written = [out_dir / name for name in ("runs.csv", "cost.csv", "controls.csv", "comparison.csv", "comparison.png",
                                           "quantization.csv", "pareto.png", "width_sweep.csv", "width_sweep.png")]
    print("\nwrote " + ", ".join(str(p) for p in written if p.exists()))
    return 0


def _measure(out_dir: Path, repeats: int, quiet: bool):
    """The measure phase on ``out_dir``; prints where the machine was too busy for fair figures."""
    from models.studies.cost import measure_study

    table = measure_study(out_dir, repeats=repeats, progress=not quiet)
    if len(table) and bool(table["busy"].iloc[0]):
        print(f"warning: the machine was busy while measuring (1-minute load {table['load_avg_1min_after'].iloc[0]:.2f} "
              f"on {table['cpu_count'].iloc[0]} cores): cost.csv flags these real-time factors busy; run "
              f"`python -m models measure {out_dir}` on a quiet machine")
    return table


def _cmd_measure(args: argparse.Namespace) -> int:
    from models.errors import ConfigError
    from models.studies.study import load_study, study_dir

    if args.repeats < 1:
        raise ConfigError(f"--repeats: expected >= 1, found {args.repeats}")
    out_dir = args.study if args.study.is_dir() else study_dir(load_study(args.study))
    table = _measure(out_dir, args.repeats, args.quiet)
    shown = ["run_id", "rtf_offline_median", "rtf_offline_min", "rtf_offline_max", "rtf_stream_median",
             "rtf_stream_min", "rtf_stream_max"]
    with _pandas_display():
        print(table[shown].to_string(index=False))
    print(f"\nmeasured {len(table)} runs on {table['cpu_model'].iloc[0] if len(table) else 'this CPU'}, one thread, "
          f"{args.repeats} rounds; wrote {out_dir / 'cost.csv'} and updated {out_dir / 'runs.csv'}")
    return 0


def _pandas_display():
    import pandas as pd

    return pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4g}".format)


def _cmd_train(args: argparse.Namespace) -> int:
    from models.config import from_dict, load_yaml
    from models.errors import ConfigError
    from models.studies.runs import RunConfig, execute_run
    from models.training.compute import resolve_device

    device = resolve_device(args.device)
    path = args.config
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            raise ConfigError(f"{path}: not a run folder (no config.json)")
        try:
            raw = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{config_path} line {exc.lineno}: expected the run's JSON config, found "
                              f"invalid JSON ({exc.msg})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path}: cannot be read ({exc})") from None
        runs_root = args.runs or path.parent
        where = str(config_path)
    else:
        raw = load_yaml(path)
        runs_root = args.runs or Path("results/zoo/adhoc/runs")
        where = str(path)
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if k not in _RESOLVED_ONLY}
        if isinstance(raw.get("model"), dict):
            raw["model"] = {k: v for k, v in raw["model"].items() if k != "n_knobs"}
    config = from_dict(RunConfig, raw, where=where)
    print(f"training {config.run_id} in {runs_root}")
    row = execute_run(config, runs_root, resume=args.resume, progress=not args.quiet, device=device)
    print(json.dumps(row, indent=2))
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from common.outputs import check_output_folder, output_folder
    from models.data.datasets import DatasetConfig
    from models.data.sources import load_dataset
    from models.errors import OutputError
    from models.resources import unwritable_reason

    if args.write:
        # Refused before the dataset is built: a folder that cannot be written or holds other files.
        reason = unwritable_reason(args.write)
        if reason is not None:
            raise OutputError(f"--write {args.write}: expected a folder that can be created, found that {reason}")
        check_output_folder(args.write, DATASET_AUDIO, OutputError)
    if args.device:
        config = DatasetConfig(name=args.device, device=args.device, sample_rate=args.sample_rate,
                               duration_s=args.duration_s, seed=args.seed, latency_samples=args.latency_samples,
                               slim=args.slim, width=args.width, dry=None if args.dry is None else tuple(args.dry))
    elif args.teacher_nam:
        config = DatasetConfig(name=args.teacher_nam.stem, teacher_nam=str(args.teacher_nam),
                               sample_rate=args.sample_rate, duration_s=args.duration_s, seed=args.seed,
                               resample=args.resample, channel=args.channel, latency_samples=args.latency_samples,
                               slim=args.slim, width=args.width, dry=None if args.dry is None else tuple(args.dry))
    else:
        config = DatasetConfig(name=args.path.name, path=str(args.path), layout=args.layout,
                               resample=args.resample, channel=args.channel, latency_samples=args.latency_samples,
                               slim=args.slim, width=args.width, dry=None if args.dry is None else tuple(args.dry))
    dataset = load_dataset(config)
    print(f"dataset {dataset.name}: {dataset.description}")
    latency = (f"{dataset.latency_samples} samples ({1000 * dataset.latency_samples / dataset.sample_rate:.2f} ms)"
               if dataset.latency is None else dataset.latency.describe(dataset.sample_rate))
    print(f"sample rate {dataset.sample_rate} Hz, knobs {list(dataset.knob_names) or 'none'}, "
          f"latency {latency}, {'compensated' if config.compensate_latency else 'not compensated'}")
    for split, segments in dataset.splits.items():
        knobs = sorted({s.knobs for s in segments})
        print(f"  {split:<10} {dataset.duration_s(split):8.2f} s in {len(segments)} segment(s)"
              + (f", knob values {knobs}" if dataset.knob_names else ""))
    if args.write:
        import soundfile as sf

        with output_folder(args.write, DATASET_AUDIO, OutputError) as staging:
            for split, segments in dataset.splits.items():
                for i, segment in enumerate(segments):
                    for kind, audio in (("input", segment.input), ("target", segment.target)):
                        sf.write(staging / f"{split}-{i}-{kind}.wav", audio, dataset.sample_rate, subtype="PCM_24")
        print(f"wrote WAV files to {args.write}")
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from models.dsp.devices import PRESETS, get_device

    for name in PRESETS:
        device = get_device(name)
        knobs = ", ".join(device.knob_names) or "-"
        doc = (type(device).__doc__ or "").strip().splitlines()[0] if type(device).__doc__ else ""
        print(f"{name:<20} knobs: {knobs:<10} {doc}")
    return 0


def _render_source(args: argparse.Namespace):
    """``(model, sample_rate, knob_names, what)`` for the render command's MODEL: a run folder, a
    .nam file (with --slim/--width where it has levels) or an export (with --width where it keeps
    several widths)."""
    from models.errors import ConfigError

    path = args.model
    if args.slim is not None and args.width is not None:
        raise ConfigError("--slim and --width: expected one of them (--slim for a SlimmableContainer .nam file, "
                          "--width for a slimmable WaveNet or export), found both")
    if path.is_dir():
        from models.training.checkpoints import load_model

        if args.slim is not None or args.width is not None:
            raise ConfigError(f"{path}: --{'slim' if args.slim is not None else 'width'} applies to a .nam file or "
                              "an export, found a run folder (export it at a width with `export --width`)")
        model, payload = load_model(path)
        return model, payload.get("sample_rate"), list(payload.get("knob_names", [])), f"run {path.name}"
    suffix = path.suffix.lower()
    if suffix == ".nam":
        return _render_nam(path, args.slim, args.width)
    if suffix in (".pt", ".json"):
        return _render_export(path, args.slim, args.width)
    found = "no such file or folder" if not path.exists() else f"a {suffix or 'suffix-less'} file"
    raise ConfigError(f"{path}: expected a run folder, a .nam file or an export (<name>.pt / <name>.json), "
                      f"found {found}")


def _render_nam(path: Path, slim: float | None, width: float | None):
    from models.errors import ConfigError
    from models.export.nam_read import load_nam_at

    if slim is not None and not 0.0 <= slim <= 1.0:
        raise ConfigError(f"--slim: expected NAM's slim value in [0, 1], found {slim:g}")
    model, info = load_nam_at(path, slim=slim, width=width)
    rate = float(info["sample_rate"])
    if rate != int(rate):
        raise ConfigError(f"{path}: sample_rate {rate:g} Hz; expected a whole number of hertz")
    what = f"{path.name} (NAM format {info.get('version')}, {info.get('architecture')}"
    what += ")" if slim is None and width is None else f", {'slim' if slim is not None else 'width'} " \
        f"{slim if slim is not None else width:g})"
    return model.eval(), int(rate), [], what


def _render_export(path: Path, slim: float | None, width: float | None):
    from models.errors import ConfigError
    from models.export.bundle import load_export

    if slim is not None:
        raise ConfigError(f"{path}: --slim applies to a SlimmableContainer .nam file; an export takes --width")
    model, manifest = load_export(path)
    what = f"export {manifest.get('name')} ({manifest['architecture'].get('label')}, {manifest.get('bits')}-bit"
    if width is not None:
        from models.nets.slimmable import slim as cut

        allowed = (manifest.get("widths") or {}).get("allowed") or [1.0]
        if len(allowed) < 2:
            raise ConfigError(f"{path}: keeps one width (its manifest's widths.allowed is {allowed}); --width applies "
                              "to a slimmable export")
        if not min(allowed) - 1e-9 <= width <= 1.0:
            raise ConfigError(f"--width: expected a fraction of the channels from {min(allowed):g} to 1 "
                              f"(the export's widths.allowed), found {width:g}")
        model = cut(model, width).eval()
        what += f", width {width:g}"
    return model, int(manifest["sample_rate"]), list(manifest["architecture"].get("knob_names") or []), what + ")"


def _cmd_render(args: argparse.Namespace) -> int:
    import numpy as np
    import soundfile as sf

    from common.outputs import write_file_atomic
    from models.errors import ConfigError, DatasetError, OutputError
    from models.inference.rendering import render
    from models.resources import unwritable_reason
    from models.training.compute import resolve_device

    device = resolve_device(args.device)
    model, model_rate, names, what = _render_source(args)
    try:
        audio, rate = sf.read(args.input, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DatasetError(f"{args.input}: cannot read as audio ({exc})") from None
    if audio.shape[1] != 1:
        raise DatasetError(f"{args.input}: expected mono audio, found {audio.shape[1]} channels")
    if rate != model_rate:
        runs_at = "the model was trained at" if args.model.is_dir() else f"{what} runs at"
        raise DatasetError(f"{args.input}: sample rate {rate} Hz, but {runs_at} {model_rate} Hz")
    given = {}
    for item in args.knob:
        name, _, value = item.partition("=")
        try:
            given[name] = float(value)
        except ValueError:
            raise ConfigError(f"--knob {item!r}: expected NAME=NUMBER") from None
    if set(given) != set(names):
        raise ConfigError(f"--knob: this model needs values for {names or 'no knobs'}, found {sorted(given)}")
    reason = unwritable_reason(args.output)
    if reason is not None or args.output.is_dir():
        raise OutputError(f"{args.output}: expected a WAV file to write, found "
                          f"{'a folder' if reason is None else 'that ' + reason}")
    y = render(model, audio[:, 0], [given[n] for n in names] if names else None, device=device)
    encoded = io.BytesIO()
    if args.float_wav:
        sf.write(encoded, y, rate, subtype="FLOAT", format="WAV")
    else:
        beyond = int(np.count_nonzero(np.abs(y) > 1.0))
        if beyond:
            print(f"warning: {beyond} samples beyond full scale (peak {float(np.max(np.abs(y))):.3g}) were clipped "
                  "in the 24-bit WAV; --float keeps them")
        sf.write(encoded, np.clip(y, -1.0, 1.0), rate, subtype="PCM_24", format="WAV")
    write_file_atomic(args.output, encoded.getvalue(), OutputError)
    print(f"wrote {args.output} ({len(y) / rate:.2f} s) with {what}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from models.inference.bench import run_bench

    return run_bench(repeats=args.repeats, audio_s=args.audio_s, checkpoint=args.checkpoint, only=args.only,
                     quick=args.quick)


def _cmd_export(args: argparse.Namespace) -> int:
    from models.errors import ConfigError
    from models.export.bundle import export_run
    from models.export.study_export import export_study, is_study_folder

    options = dict(fmt=args.format, width=args.width, name=args.name, nam_version=args.nam_version,
                   nam_container=args.nam_container)
    if is_study_folder(args.run_dir):
        for run_dir, result, reason in export_study(args.run_dir, args.out, args.select, args.every, **options):
            if result is None:
                print(f"not exported: {run_dir.name} — {reason}")
            else:
                _print_export(result)
        return 0
    if args.select is not None or args.every:
        raise ConfigError(f"--select/--all pick runs of a study folder (holding runs.csv and runs/); "
                          f"{args.run_dir} is not one")
    _print_export(export_run(args.run_dir, args.out, **options))
    return 0


def _print_export(result: dict) -> None:
    for path in result["paths"].values():
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    for kind, reason in result["not_written"].items():
        print(f"not written: the .{kind} file — {reason}")
    manifest = result["manifest"]
    if manifest is not None:
        loudness = manifest["loudness"]["output_lufs"]
        print(f"{manifest['architecture']['label']}: {manifest['parameters']} parameters, "
              f"{manifest['macs_per_sample']} multiply-adds per sample, {manifest['bits']}-bit, "
              f"{manifest['size']['bytes']} bytes, {manifest['sample_rate']} Hz, output loudness "
              f"{'silent' if loudness is None else f'{loudness:.1f} LUFS'} on the test signal; "
              f"sha256 {manifest['provenance']['weights_sha256'][:16]}…")


COMMANDS = {"study": _cmd_study, "measure": _cmd_measure, "train": _cmd_train, "dataset": _cmd_dataset, "devices": _cmd_devices,
            "render": _cmd_render, "bench": _cmd_bench, "export": _cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging(args)
    return run_verb(lambda: COMMANDS[args.verb](args),
                    interrupted="interrupted: every finished epoch is saved (last.pt); run the same command again to resume")
