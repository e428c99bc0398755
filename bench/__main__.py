"""``python -m bench NAME [options]``: run one benchmark, or all of them, and print markdown tables.

NAME is one of consistency, flow, scenes, speed, pictures, fast, fast_learned, reliability, regions, schedule, history,
hd, mobilenet_layers, feedforward, fast_clips, preview, all; ``python -m bench NAME --help``
lists the options. Figures go to ``--out`` (default bench/results/).
"""

import argparse
import importlib
import sys

from .common import add_common_arguments

BENCHMARKS = {
    "flow": "bench.flow",
    "consistency": "bench.consistency",
    "scenes": "bench.scene_consistency",
    "speed": "bench.speed",
    "pictures": "bench.pictures",
    "fast": "bench.fast",
    "fast_learned": "bench.fast_learned",
    "reliability": "bench.reliability",
    "regions": "bench.regions",
    "schedule": "bench.schedule",
    "history": "bench.history",
    "hd": "bench.hd",
    "mobilenet_layers": "bench.mobilenet_layers",
    "feedforward": "bench.feedforward",
    "fast_clips": "bench.fast_clips",
    "preview": "bench.preview",
}


def parser_for(name, module):
    parser = argparse.ArgumentParser(prog=f"python -m bench {name}", description=module.__doc__)
    add_common_arguments(parser)
    if hasattr(module, "add_arguments"):
        module.add_arguments(parser)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in (*BENCHMARKS, "all"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        common = argparse.ArgumentParser(prog="python -m bench all", description="every benchmark with its defaults")
        add_common_arguments(common)
        common.parse_args(rest)
    for bench in BENCHMARKS if name == "all" else [name]:
        module = importlib.import_module(BENCHMARKS[bench])
        module.run(parser_for(bench, module).parse_args(rest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
