"""`labelsieve` command line: a thin shell over the Python API, one file per verb (same words as config keys and keyword
arguments). Each verb module has `add(subparsers)`, which registers its parser with a `handler(args) -> exit code`."""

from __future__ import annotations

import argparse
import logging
import ssl
import sys
import traceback
from typing import NoReturn

from labelsieve.cli import (dataset, demo, deploy, eval, export, imports, label, predict, push, review, run, sync, train,
                            validate)
from labelsieve.errors import LabelsieveError

__all__ = ["main"]

VERBS = (run, validate, sync, label, dataset, export, imports, push, eval, review, train, predict, deploy, demo)

EXAMPLES = """examples:
  labelsieve run configs/camera.json                      serve on 127.0.0.1:8080, reload on edits
  labelsieve run configs/camera.json --host 0.0.0.0 --port 9090   (set LABELSIEVE_API_KEY to require a key)
  labelsieve validate configs/camera.json                 check everything, start nothing
  labelsieve sync ~/.labelsieve/capture s3://bucket/robot1   upload closed capture files, verified, resumable
  labelsieve label ~/.viam/capture clips/ --config machine.json --filter labeler --out labeled/   label the backlog
  labelsieve dataset build s3://bucket/robot1 datasets/glasses   the next dataset version (YOLO + COCO)
  labelsieve eval machine.json --filter labeler --truth sample/coco.json --out eval/v1   label quality vs hand labels
  labelsieve dataset build viam://dataset/glasses?org=ORG datasets/glasses   from Viam's cloud (VIAM_API_KEY[_ID])
  labelsieve push datasets/glasses viam://dataset/glasses   verified boxes back to Viam, into a Viam dataset
  labelsieve export datasets/glasses --format viam out       Viam's dataset.jsonl + data/
  labelsieve review datasets/glasses                    accept, delete, fix, relabel, draw boxes in the browser -> next version
  labelsieve export datasets/glasses --format label-studio ls/   tasks + predictions for Label Studio (or --format coco)
  labelsieve import label-studio export.json datasets/glasses     Label Studio's review back -> next version
  labelsieve train datasets/glasses --epochs 50 --imgsz 640      a versioned model directory (weights, ONNX, metrics)
  labelsieve predict models/v1 frames/                   the model's boxes drawn on pictures, to eyeball it
  labelsieve deploy models/v1 --config machine.json --service fast   hot-swap on one machine (--to URL: a fleet)
"""


class _Parser(argparse.ArgumentParser):
    """A bad flag is one line naming the verb's help, exit 2 (argparse's usage block buries the problem)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="labelsieve", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    """Every error ends here, once: importing viam replaces `sys.excepthook` with one that logs through viam's own
    handler and the root logger and then prints again, so an escaping exception used to print three times."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except (LabelsieveError, OSError, ssl.SSLError) as exc:  # a user's mistake gets one clear line, not a traceback
        subject = getattr(args, "config", None)
        print(f"labelsieve {args.command}: {subject}:\n{exc}" if "\n" in str(exc) and subject
              else f"labelsieve {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the user knows; no traceback
        return 130
    except Exception:  # noqa: BLE001 (a bug: one traceback, without viam's excepthook printing it twice more)
        traceback.print_exc()
        return 1
