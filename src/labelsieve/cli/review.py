"""`labelsieve review DATASET`: a local page to accept, reject or relabel boxes; finishing writes the next version."""

from __future__ import annotations

import argparse
import getpass
import logging
import threading
import webbrowser

from labelsieve.cli.common import verb

__all__ = ["add"]

log = logging.getLogger(__name__)

EXAMPLES = """examples:
  labelsieve review datasets/glasses                 review the latest version; prints the page's address
  labelsieve review datasets/glasses --port 8765 --open   a fixed port, and open it in the default browser
keys on the page: a accept, r delete, 1-9 relabel to class N, z undo, n/p or arrows next/previous, g grid of crops,
f finish; drag a box to move it, a corner to resize, elsewhere to draw a missed one
"""


def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb(sub, "review", "serve a local page to review and fix a dataset's boxes (least agreement first); finishing "
             "writes the next version and prints its folder last", EXAMPLES)
    p.add_argument("dataset", metavar="DATASET", help="dataset folder (its latest version is reviewed)")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    p.add_argument("--reviewer", default=None, help="name recorded with each change (default: the login name)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from labelsieve.dataset import open_dataset, versions
    from labelsieve.errors import InputError
    from labelsieve.review import Review, ReviewServer

    if "://" in args.dataset:
        raise InputError(f"{args.dataset}: review a local dataset folder (the next version is written next to it); "
                         "copy it here first, then upload the reviewed version")
    version = open_dataset(args.dataset)
    latest = versions(version.path.parent)
    if not latest or latest[-1].path != version.path:
        raise InputError(f"{args.dataset}: review the dataset's latest version ({latest[-1].name if latest else '?'}), "
                         "so that the next one follows it")
    review = Review(version)
    server = ReviewServer(review, port=args.port, reviewer=args.reviewer or getpass.getuser())
    counts = review.counts()
    print(f"reviewing {version.path} ({counts['boxes']} boxes, {counts['decided']} already decided)", flush=True)
    print(f"open {server.url}  (Ctrl-C stops; decisions are kept and picked up next time)", flush=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    if args.open:
        webbrowser.open(server.url)
    try:
        server.finished.wait()
    except KeyboardInterrupt:
        log.info("stopped; %d decisions kept in %s", review.counts()["decided"], review.log)
        return 130
    finally:
        server.shutdown()
        server.server_close()
    assert server.result is not None
    print(server.result.path, flush=True)
    return 0
