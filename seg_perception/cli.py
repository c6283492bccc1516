"""`seg-perception`: one command line for the whole product.

Each subcommand is documented in README.md; `seg-perception COMMAND --help` lists its options.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from seg_perception.inference.errors import BackendError
from seg_perception.ros_io.environment import apply_ros_defaults


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x512, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"size {text} is too small (minimum 16x16)")
    return width, height


def parse_scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scale range must look like 0.5,2.0, got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"scale range needs 0 < MIN <= MAX, got {text}")
    return low, high


def parse_cameras(text: str) -> tuple[str, ...]:
    from seg_perception.synth import RIG_YAWS_DEG

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in RIG_YAWS_DEG]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown camera(s) {unknown or text!r}; known: {', '.join(RIG_YAWS_DEG)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"camera listed twice in {text!r}")
    return names


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--sequences", type=int, default=1, help="number of independent drives (default 1)")
    parser.add_argument("--frames", type=int, default=100, help="frames per sequence and camera (default 100)")
    parser.add_argument("--size", type=parse_size, default=(1024, 512), help="WxH (default 1024x512)")
    parser.add_argument("--seed", type=int, default=0, help="world seed; same seed, same data (default 0)")
    parser.add_argument("--format", choices=("cityscapes", "bag"), default="cityscapes", dest="fmt")
    parser.add_argument("--cameras", type=parse_cameras, default=("front",),
                        help="comma-separated rig cameras, e.g. front,front_left (default front)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the sequences (default 10)")
    parser.add_argument("--split", default="train", help="Cityscapes split folder (default train)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--compressed", action="store_true", help="bag images as jpeg CompressedImage")
    parser.add_argument("--workers", type=int, default=1, help="processes, one sequence each (default 1)")
    parser.add_argument("--variety", action="store_true",
                        help="opt-in harder scenes: motorcycles, crosswalks, dusk/night, rain (default off: the "
                             "worlds, and so the recorded splits, stay as they were)")


def cmd_synth(args: argparse.Namespace) -> int:
    from seg_perception.datasets.synthetic import write_synthetic

    width, height = args.size
    start = time.perf_counter()
    manifest = write_synthetic(
        args.out, fmt=args.fmt, sequences=args.sequences, frames=args.frames, width=width, height=height,
        seed=args.seed, cameras=args.cameras, fps=args.fps, split=args.split, storage=args.storage,
        compressed=args.compressed, workers=args.workers, variety=args.variety,
    )
    total = args.sequences * args.frames * len(args.cameras)
    elapsed = time.perf_counter() - start
    print(f"wrote {total} images ({args.fmt}) to {args.out} in {elapsed:.1f} s; manifest: {manifest}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from seg_perception.training.trainer import TrainConfig, train

    config = TrainConfig(
        train_data=tuple(args.data), val_data=tuple(args.val_data), out=str(args.out), arch=args.arch,
        input_size=args.input_size, crop_size=args.crop_size, scale_range=args.scale_range,
        batch_size=args.batch_size, epochs=args.epochs,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay, lane_dice=args.lane_dice,
        workers=args.workers, seed=args.seed, device=args.device, amp=not args.no_amp,
        max_iterations=args.max_iterations, fp16_weights=not args.fp32_weights,
        command=shlex.join(["seg-perception", *args.argv]), init_weights=str(args.init_weights or ""),
        profile=args.profile, backbone_weights=str(args.backbone_weights or ""), instance_stride=args.instance_stride,
        decoded_cache=str(args.decoded_cache or ""),
    )
    train(config, resume=args.resume)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from seg_perception.training.data import parse_data_spec
    from seg_perception.training.decoded_cache import DecodedCache

    refs = [ref for spec in args.data for ref in parse_data_spec(spec)]
    start = time.perf_counter()
    written, present = DecodedCache(args.out).write(refs)
    print(f"{args.out}: decoded {written} samples, {present} were there already, in "
          f"{time.perf_counter() - start:.1f} s; train with --decoded-cache {args.out}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from seg_perception.models.convert import write_official_checkpoint

    out = write_official_checkpoint(args.source, args.out, input_size=args.input_size, fp16=not args.fp32_weights)
    print(f"wrote {out} (DDRNet-23-slim, 19 Cityscapes classes, no instance head) from {args.source}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    import torch

    from seg_perception.evaluation.dataset_eval import EvalSettings, evaluate_model
    from seg_perception.models.checkpoint import load_checkpoint
    from seg_perception.postprocess.panoptic import PanopticConfig
    from seg_perception.postprocess.roles import role_mapping_for
    from seg_perception.ros_io.environment import resolve_model_path
    from seg_perception.training.data import parse_data_spec

    if args.bags and args.dataset:
        raise ValueError("give bags or --dataset folders, not both")
    if args.bags:
        from seg_perception.replay.command import run_bag_eval, summary

        print(summary(run_bag_eval(args), args.out))
        return 0
    if not args.dataset:
        raise ValueError("give one or more bags, or --dataset KIND:PATH:SPLIT")
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model_path = resolve_model_path(args.model)  # as the node and bag eval find it: from any directory
    model, card = load_checkpoint(model_path, device=device)
    roles = role_mapping_for(card.class_names, card.thing_ids, args.classes)
    input_size = args.input_size or card.input_size
    settings = EvalSettings(class_names=card.class_names, thing_ids=card.thing_ids, input_size=input_size,
                            mean=card.mean, std=card.std, roles=roles,
                            panoptic=PanopticConfig.for_input(card.thing_ids, input_size))
    refs = [ref for spec in args.dataset for ref in parse_data_spec(spec)]
    result = evaluate_model(model, refs, settings, device=device, batch_size=args.batch_size)
    result["model"] = str(args.model)
    result["data"] = list(args.dataset)
    result["input_size"] = list(input_size)
    if args.record:
        from dataclasses import replace

        from seg_perception.models.card import CARD_FILE, save_card

        command = shlex.join(["seg-perception", *args.argv])
        metrics = {**card.metrics, args.record: {"data": list(args.dataset), "command": command,
                                                 "device": str(device), "values": result}}
        card_path = model_path if model_path.is_file() else model_path / CARD_FILE
        save_card(replace(card, metrics=metrics), card_path)
        print(f"recorded as metrics.{args.record} in {card_path}", file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from seg_perception.inference.export import export_onnx

    path = export_onnx(args.model, args.out, opset=args.opset, input_size=args.input_size)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    if args.tensorrt:
        from seg_perception.inference.backends import OnnxRuntimeBackend
        from seg_perception.inference.factory import default_cache_dir
        from seg_perception.inference.tensorrt_backend import TensorRTBackend

        cache = args.engine_cache or default_cache_dir("engines")
        backend = TensorRTBackend(path, OnnxRuntimeBackend.read_card(path), cache_dir=cache,
                                  precision=args.precision, max_batch=args.max_batch)
        built = "reused" if backend.build_s is None else f"built in {backend.build_s:.1f} s"
        print(f"TensorRT engine {backend.engine_path} ({built})")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.soak is not None:
        from seg_perception.soak import run_soak_command

        return run_soak_command(args)
    if args.metres:
        from seg_perception.benchmark import device_name, metres_outputs_ms

        rows = [metres_outputs_ms(size) for size in args.sizes]
        for row in rows:
            print(f"outputs in metres, {row['width']}x{row['height']}, {row['cameras']} cameras "
                  f"({row['obstacles_per_frame']} obstacles per frame): grid {row['grid_ms_per_frame']} ms, "
                  f"obstacles {row['obstacles_ms_per_frame']} ms, lanes {row['lanes_ms_per_frame']} ms per frame "
                  f"({device_name('cpu')})")
        if args.json:
            args.json.write_text(json.dumps({"command": shlex.join(["seg-perception", *args.argv]),
                                             "device_name": device_name("cpu"), "rows": rows}, indent=2) + "\n")
        return 0
    import torch

    from seg_perception.benchmark import markdown_table, run_benchmark, write_json

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here (torch {torch.__version__})")
    result = run_benchmark(args.model, backends=args.backends.split(","), sizes=args.sizes, batches=args.batches,
                           warmup=args.warmup, calls=args.calls, device=args.device, baseline=not args.no_baseline,
                           trt_precision=args.trt_precision, torch_precision=args.torch_precision)
    result["command"] = shlex.join(["seg-perception", *args.argv])
    print()
    print(f"device: {result['device']} ({result['device_name']})")
    print(markdown_table(result))
    print()
    for name, value in result["ratios"].items():
        print(f"{name}: {value}")
    if args.json:
        write_json(result, args.json)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seg_perception.demo import run_demo

    return run_demo(args.out)


def topic_list(values: Sequence[str] | None) -> list[str] | None:
    """--topics a b and --topics a,b both work."""
    if values is None:
        return None
    return [topic for value in values for topic in value.split(",") if topic]


def cmd_play(args: argparse.Namespace) -> int:
    from seg_perception.replay.play import DEFAULT_CLOCK_HZ, parse_remaps, play_bags

    if args.clock_hz is not None and not args.clock:
        raise ValueError("--clock-hz sets the rate of --clock; add --clock")
    try:
        stats = play_bags(
            args.bags, topics=topic_list(args.topics), rate=args.rate, loop=args.loop, restamp=args.restamp,
            remap=parse_remaps(args.remap), qos_reliability="reliable" if args.reliable else "best_effort",
            wait_for_subscribers=args.wait_for_subscribers, offsets_file=args.offsets_file,
            clock_hz=(DEFAULT_CLOCK_HZ if args.clock_hz is None else args.clock_hz) if args.clock else None,
        )
    except KeyboardInterrupt:  # a signal before playback took over SIGINT: stopping is no error
        return 0
    counts = ", ".join(f"{topic} {n}" for topic, n in sorted(stats.published.items()))
    clock = f"; /clock {stats.clock_ticks} ticks" if args.clock else ""
    print(f"published {stats.total} messages in {stats.duration_s:.1f} s, {stats.loops} full pass(es): {counts}"
          f"{clock}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from seg_perception.replay.record import record

    def ready() -> None:
        what = " ".join(topic_list(args.topics) or []) if args.topics else f"topics under {args.node_prefix}"
        print(f"recording {what} to {args.out}", flush=True)  # tests and scripts wait for this line

    try:
        stats = record(args.out, topics=topic_list(args.topics), node_prefix=args.node_prefix, duration_s=args.duration,
                       storage=args.storage, on_ready=ready)
    except KeyboardInterrupt:
        return 0
    counts = ", ".join(f"{topic} {n}" for topic, n in sorted(stats.messages.items()))
    print(f"recorded {stats.total} messages in {stats.duration_s:.1f} s to {stats.path}: {counts or 'none'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seg-perception", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    synth = sub.add_parser("synth", help="generate synthetic driving sequences with exact ground truth")
    add_synth_arguments(synth)
    synth.set_defaults(run=cmd_synth)
    trainer = sub.add_parser("train", help="train the panoptic model (DDRNet-23-slim or BiSeNetV2 + instance head)")
    trainer.add_argument("--data", action="append", required=True,
                         help="training set KIND:PATH:SPLIT (cityscapes, synthetic, bdd100k[:10k|:100k]); repeatable")
    trainer.add_argument("--val-data", action="append", default=[], help="validation set, same form; repeatable")
    trainer.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    trainer.add_argument("--arch", choices=("ddrnet23_slim", "bisenetv2"), default="ddrnet23_slim")
    trainer.add_argument("--input-size", type=parse_size, default=(1024, 512), help="model input WxH (1024x512)")
    trainer.add_argument("--crop-size", type=parse_size, default=(512, 256), help="training crop WxH (512x256)")
    trainer.add_argument("--scale-range", type=parse_scale_range, default=(0.5, 2.0),
                         help="random rescaling of the input size before cropping, MIN,MAX (0.5,2.0)")
    trainer.add_argument("--batch-size", type=int, default=8)
    trainer.add_argument("--epochs", type=int, default=10)
    trainer.add_argument("--max-iterations", type=int, default=0, help="stop after this many iterations (0: none)")
    trainer.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    trainer.add_argument("--lr", type=float, default=2e-3)
    trainer.add_argument("--weight-decay", type=float, default=1e-2)
    trainer.add_argument("--lane-dice", type=float, default=0.5, help="weight of the lane Dice term (0: off)")
    trainer.add_argument("--workers", type=int, default=2, help="data loader processes")
    trainer.add_argument("--seed", type=int, default=0)
    trainer.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    trainer.add_argument("--no-amp", action="store_true", help="full precision on GPU")
    trainer.add_argument("--fp32-weights", action="store_true", help="store fp32 instead of fp16 weights")
    trainer.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    trainer.add_argument("--init-weights", type=Path,
                         help="start from this checkpoint folder (aux heads start fresh); e.g. models/demo")
    trainer.add_argument("--decoded-cache", type=Path,
                         help="read samples decoded once by `seg-perception decode` from this folder")
    trainer.add_argument("--instance-stride", type=int, choices=(4, 8), default=8,
                         help="instance head stride: 4 reads the backbone's 1/4 features (small objects), 8 the /8")
    trainer.add_argument("--backbone-weights", type=Path,
                         help="the authors' ImageNet-pretrained DDRNet-23-slim (DDRNet23s_imagenet.pth): every "
                              "backbone tensor but DAPPM's must load; its classifier is dropped")
    trainer.add_argument("--profile", type=int, default=0, metavar="N",
                         help="time N iterations: loader wait against step time, written to OUT/profile.json; "
                              "no model is written")
    trainer.set_defaults(run=cmd_train)
    decode = sub.add_parser("decode", help="decode training samples once into a folder train --decoded-cache reads")
    decode.add_argument("--data", action="append", required=True, help="KIND:PATH:SPLIT[:SUBSET]; repeatable")
    decode.add_argument("--out", type=Path, required=True, help="the cache folder (created; entries are added)")
    decode.set_defaults(run=cmd_decode)
    convert = sub.add_parser(
        "convert", help="an official DDRNet-23-slim Cityscapes checkpoint (.pth) -> a checkpoint folder")
    convert.add_argument("source", type=Path, help="the authors' file, e.g. best_val_smaller.pth (weights only)")
    convert.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    convert.add_argument("--input-size", type=parse_size, default=(2048, 1024),
                         help="input WxH for the card (2048x1024, the authors' evaluation size)")
    convert.add_argument("--fp32-weights", action="store_true", help="store fp32 instead of fp16 weights")
    convert.set_defaults(run=cmd_convert)
    evaluate = sub.add_parser(
        "eval", help="replay bags through the node's pipeline (metrics, latency, output bag, report), "
                     "or score a checkpoint on labelled folders (--dataset)")
    evaluate.add_argument("--model", type=Path, default=Path("models/demo"),
                          help="checkpoint folder (model_card.json + weights) or, for bags, an .onnx (models/demo)")
    evaluate.add_argument("--dataset", action="append", default=[],
                          help="labelled folder KIND:PATH:SPLIT instead of bags; repeatable")
    evaluate.add_argument("--classes", type=Path, help="role mapping (default config/classes.yaml)")
    evaluate.add_argument("--batch-size", type=int, default=4)
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", type=Path, help="also write the metrics to this file")
    evaluate.add_argument("--record", metavar="NAME",
                          help="store the metrics, data and this command in the model card under metrics.NAME")
    evaluate.add_argument("--input-size", type=parse_size,
                          help="model input WxH (default: input_width/height of --params when set, else the card's)")
    from seg_perception.replay.command import add_bag_arguments

    add_bag_arguments(evaluate)
    evaluate.set_defaults(run=cmd_eval)
    export = sub.add_parser("export", help="export a checkpoint to one ONNX graph (uint8 NHWC in, argmax inside)")
    export.add_argument("--model", type=Path, required=True, help="checkpoint folder (model_card.json + weights)")
    export.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, at least 17 (default 17)")
    export.add_argument("--input-size", type=parse_size, help="WxH other than the model card's")
    export.add_argument("--tensorrt", action="store_true",
                        help="also build (or reuse) the TensorRT engine for this GPU, into the engine cache")
    export.add_argument("--precision", choices=("fp16", "int8", "fp32"), default="fp16",
                        help="TensorRT precision (int8 calibrates on synthetic frames unless a cache exists)")
    export.add_argument("--max-batch", type=int, default=4, help="TensorRT profile: cameras per call (4)")
    export.add_argument("--engine-cache", type=Path, help="engine folder (default ~/.cache/seg_perception/engines)")
    export.set_defaults(run=cmd_export)
    bench = sub.add_parser("bench", help="backends x sizes x batch, end to end with per-stage times")
    bench.add_argument("--model", type=Path, default=Path("models/demo"), help="checkpoint folder (models/demo)")
    bench.add_argument("--backends", default="torch,onnxruntime",
                       help="comma-separated: torch, onnxruntime, tensorrt (GPU only)")
    bench.add_argument("--trt-precision", choices=("fp16", "int8", "fp32"), default="fp16")
    bench.add_argument("--torch-precision", choices=("fp32", "fp16"), default="fp32",
                       help="the torch backend's precision (fp16 on CUDA only, with channels_last)")
    bench.add_argument("--sizes", type=lambda t: [parse_size(v) for v in t.split(",")],
                       default=[(512, 256), (1024, 512), (2048, 1024)], help="WxH list (512x256,1024x512,2048x1024)")
    bench.add_argument("--batches", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, 4],
                       help="cameras per call (1,2,4)")
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--calls", type=int, default=10)
    bench.add_argument("--device", default="cpu",
                       help="cpu, cuda, cuda:1 ... (on CUDA the network and the GPU share of inference are "
                            "timed with CUDA events)")
    bench.add_argument("--no-baseline", action="store_true", help="skip torchvision LR-ASPP MobileNetV3")
    bench.add_argument("--json", type=Path, help="also write the results here")
    bench.add_argument("--metres", action="store_true",
                       help="time the outputs in metres instead (drivable grid and obstacle positions, per frame)")
    bench.add_argument("--soak", type=int, metavar="FRAMES",
                       help="instead: run the real node until FRAMES frames are processed; RSS growth and "
                            "latency drift (docs/BENCHMARKS.md, Soak)")
    from seg_perception.soak import add_soak_arguments

    add_soak_arguments(bench)
    bench.set_defaults(run=cmd_bench)
    node = sub.add_parser("node", help="run the ROS 2 node seg_perception_node from a params file",
                          description="Runs seg_perception_node here, where `ros2 launch` is not available. "
                                      "Extra ROS arguments go after --ros-args, e.g. "
                                      "--ros-args -r __ns:=/vehicle -r ~/front/in/image:=/cam/front/image_raw")
    node.add_argument("--params", type=Path, help="parameter file (default: the shipped config/perception.param.yaml)")
    node.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                      help="topic remap, e.g. ~/front/in/image:=/front/image_raw; repeatable")
    node.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                      help="override one parameter, e.g. backend:=torch; repeatable")
    node.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[],
                      help="everything after it goes to ROS unchanged")
    node.set_defaults(run=cmd_node)
    play = sub.add_parser("play", help="publish a bag's camera topics in real time (like ros2 bag play)")
    play.add_argument("bags", nargs="+", type=Path, metavar="BAG", help="bag folder(s), played one after the other")
    play.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    play.add_argument("--loop", action="store_true", help="repeat until stopped")
    play.add_argument("--topics", nargs="+", help="bag topics to play (default: camera images and camera infos)")
    play.add_argument("--restamp", action="store_true",
                      help="shift header stamps to the wall clock of each pass (offsets: --offsets-file)")
    play.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish topic FROM as TO")
    play.add_argument("--reliable", action="store_true", help="reliable QoS (default: best effort, sensor data)")
    play.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                      help="wait up to S seconds for a subscriber on every image topic (default 0: do not wait)")
    play.add_argument("--offsets-file", type=Path, help="JSON of the stamp offset of every pass (with --restamp)")
    play.add_argument("--clock", action="store_true",
                      help="publish /clock (rosgraph_msgs/Clock) following the bag's time, scaled by --rate and "
                           "restamped with --restamp, for nodes with use_sim_time; --wait-for-subscribers waits "
                           "for a /clock subscriber too")
    play.add_argument("--clock-hz", type=float, metavar="HZ",
                      help="/clock ticks per second of wall time between messages, with --clock (default 100); "
                           "each message also gets a tick at its own time")
    play.set_defaults(run=cmd_play)
    rec = sub.add_parser("record", help="record topics (default: the node's outputs) into a bag")
    rec.add_argument("--out", type=Path, required=True, help="bag folder to create")
    rec.add_argument("--topics", nargs="+", help="exactly these topics (default: all under --node-prefix)")
    rec.add_argument("--node-prefix", default="/seg_perception_node",
                     help="record the topics under this prefix, except */out/overlay (default /seg_perception_node)")
    rec.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: at SIGINT)")
    rec.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    rec.set_defaults(run=cmd_record)
    demo = sub.add_parser("demo", help="the newcomer's first run (make demo)")
    demo.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    demo.set_defaults(run=cmd_demo)
    return parser


def cmd_node(args: argparse.Namespace) -> int:
    from seg_perception.ros_io.environment import config_file
    from seg_perception.ros_io.node import NODE_NAME
    from seg_perception.ros_io.node import main as node_main
    from seg_perception.ros_io.params import PARAMS_FILE, check_overrides, load_param_file

    params = args.params or config_file(PARAMS_FILE)
    # A bad file or override is named with every problem before ROS starts.
    check_overrides(load_param_file(params), args.set)
    ros_args = ["--params-file", str(params)]
    for remap in args.remap:
        ros_args += ["-r", remap]
    for override in args.set:
        ros_args += ["-p", override]
    return node_main([NODE_NAME, "--ros-args", *ros_args, *args.ros_args])


def main(argv: Sequence[str] | None = None) -> int:
    # Before anything can create a DDS participant: Fast DDS reads its profile at that moment.
    apply_ros_defaults()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # what models cards record as the command that made them
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, BackendError) as error:
        print(f"seg-perception {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
