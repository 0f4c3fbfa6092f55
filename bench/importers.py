"""Benchmark: converting the largest released file of each family, fabricated at full size (issue 15).

For each family, one process fabricates the release's file in its exact layout (tests/importers/fabricate_*), then a
fresh process runs the whole `goaldriven-import` conversion (`import_release.convert`: build the experiment's model,
read and check every variable, assign, write the goaldriven checkpoint directory) and reports:
  * seconds: the conversion end to end, and the read + check + assign part alone (ImportReport.seconds);
  * peak_rss_gb: the converting process's peak resident memory (getrusage), and baseline_rss_gb, its memory once
    TensorFlow and goaldriven are imported (before anything is built or read);
  * the file's size on disk and the model's parameter count.

The largest files: convrnns lstm_intermediate (85 M parameters + Momentum slots); mec UGRNN_relu (4096 units, 512
place cells: 88 M parameters, 67 M of them the 8192 x 8192 cell kernel, with arrays the size of the Adam slots).
mouse_vision alexnet_bn_ir (57.6 M parameters with the IR embedding; the file also holds the 1,281,167 x 128
memory bank and the SGD momentum buffers, which the import never reads).

Usage: python -m bench.importers [--families convrnns,mec,mouse_vision] [--workdir /tmp/bench_importers]
       [--out bench/results/importers.json]
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

from bench.conv_peak import cpu_model
from goaldriven import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LARGEST = {"convrnns": "lstm_intermediate", "mec": "UGRNN_relu", "mouse_vision": "alexnet_bn_ir"}
IMAGENET_TRAIN = 1_281_167  # the memory bank's rows


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def fabricate(family: str, folder: str) -> str:
    """Writes the family's largest release at full size into `folder`; returns the path goaldriven-import takes."""
    name = LARGEST[family]
    if family == "mouse_vision":
        from tests.importers import test_mouse_vision  # pylint: disable=g-import-not-at-top

        path = os.path.join(folder, f"{name}.pt")
        test_mouse_vision.fabricate(name, path, bank_rows=IMAGENET_TRAIN, momentum=True)
        return path
    if family == "mec":
        from tests.importers import fabricate_tf2  # pylint: disable=g-import-not-at-top

        return fabricate_tf2.write(os.path.join(folder, "ckpts", "ckpt-101"), units=4096, adam_slots=True)
    from tests.importers import fabricate_tf1  # pylint: disable=g-import-not-at-top

    return fabricate_tf1.write(os.path.join(folder, "model.ckpt"), fabricate_tf1.manifest()[name])


def convert(family: str, source: str, output: str) -> dict:
    """The conversion, timed, in this (fresh) process."""
    from goaldriven import import_release  # pylint: disable=g-import-not-at-top

    baseline = _rss_gb()
    lines = []
    start = time.perf_counter()
    import_release.convert(import_release.FAMILIES[family], source, LARGEST[family], output, log=lines.append)
    seconds = time.perf_counter() - start
    assign_seconds = float(next(line for line in lines if " assigned " in line).split(" in ")[-1].split(" s")[0])
    return {
        "seconds": round(seconds, 2),
        "read_check_assign_seconds": assign_seconds,
        "peak_rss_gb": round(_rss_gb(), 2),
        "baseline_rss_gb": round(baseline, 2),
        "log": lines,
    }


def _child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.importers", "--child", *args], cwd=REPO, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(f"{args}: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _size(path: str) -> int:
    folder, stem = os.path.split(path)
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder) if n.startswith(stem))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(LARGEST))
    parser.add_argument("--workdir", default="/tmp/bench_importers")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "importers.json"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        step, family, folder = args.child
        if step == "fabricate":
            start = time.perf_counter()
            path = fabricate(family, folder)
            print(
                json.dumps({"path": path, "seconds": round(time.perf_counter() - start, 2), "peak_rss_gb": _rss_gb()})
            )
        else:
            print(json.dumps(convert(family, *folder.split("::"))))
        return
    results = {"machine": cpu_model(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(), "families": {}}
    for family in args.families.split(","):
        folder = os.path.join(args.workdir, family)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        made = _child("fabricate", family, folder)
        output = os.path.join(folder, "converted")
        done = _child("convert", family, f"{made['path']}::{output}")
        entry = {
            "release": LARGEST[family],
            "file_gb": round(_size(made["path"]) / 1e9, 3),
            "fabricate_seconds": made["seconds"],
            **{k: v for k, v in done.items() if k != "log"},
            "built": next(line for line in done["log"] if line.startswith("built ")),
        }
        results["families"][family] = entry
        print(f"{family} {LARGEST[family]}: {entry['file_gb']} GB file, converted in {entry['seconds']} s "
              f"(read+check+assign {entry['read_check_assign_seconds']} s), peak RSS {entry['peak_rss_gb']} GB "
              f"(after imports {entry['baseline_rss_gb']} GB); {entry['built']}", flush=True)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
    atomic_write.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
