"""A reviewer in Label Studio, run with the Label Studio venv's Python (label-studio-sdk lives there, not in labelsieve's
venv): `python label_studio_reviewer.py URL TOKEN OUT_DIR DOCUMENT_ROOT`. Creates a project from OUT_DIR/label_config.xml, grants
local-files access to the version's images, imports OUT_DIR/tasks.json, then annotates from the predictions: one box
accepted, one moved, one deleted, one drawn; exports the project's JSON to OUT_DIR/export.json and prints, as JSON, what
it did and whether Label Studio served a task's image."""

from __future__ import annotations

import copy
import json
import sys
import urllib.request
from pathlib import Path
from urllib.parse import unquote

from label_studio_sdk import LabelStudio

url, token, out, root = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
ls = LabelStudio(base_url=url, api_key=token)
project = ls.projects.create(title="labelsieve review", label_config=(out / "label_config.xml").read_text())
tasks = json.loads((out / "tasks.json").read_text())
images = (root / unquote(tasks[0]["data"]["image"].split("?d=", 1)[1])).parent.parent
ls.import_storage.local.create(project=project.id, path=str(images), use_blob_urls=True, title="version images")
ls.projects.import_tasks(project.id, request=tasks)
imported = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)

request = urllib.request.Request(url + imported[0].data["image"], headers={"Authorization": f"Token {token}"})
with urllib.request.urlopen(request, timeout=30) as response:
    served = response.status == 200 and response.read()[:2] == b"\xff\xd8"

done: dict[str, object] = {"served": served}
predicted = {t["data"]["labelsieve_image"]: t["predictions"][0]["result"] for t in tasks}
first, second = [t for t in imported if len(predicted[t.data["labelsieve_image"]]) >= 2][:2]
regions = copy.deepcopy(predicted[first.data["labelsieve_image"]])
regions[1]["value"]["x"] += 5.0  # moved 5 % of the width to the right
regions[1]["value"]["y"] += 2.5
accepted = [regions[0]["id"], *(r["id"] for r in regions[2:])]
done["moved"] = {regions[1]["id"]: regions[1]["value"]}
ls.annotations.create(id=first.id, result=regions, was_cancelled=False)
regions = copy.deepcopy(predicted[second.data["labelsieve_image"]])
deleted = regions.pop(0)
drawn = {"id": "drawn1", "type": "rectanglelabels", "from_name": "label", "to_name": "image",
         "original_width": deleted["original_width"], "original_height": deleted["original_height"], "image_rotation": 0,
         "value": {"x": 10.0, "y": 20.0, "width": 30.0, "height": 25.0, "rotation": 0, "rectanglelabels": ["not_blue"]}}
ls.annotations.create(id=second.id, result=[*regions, drawn], was_cancelled=False)
done |= {"deleted": [deleted["id"]], "drawn": {"image": second.data["labelsieve_image"], **drawn["value"]},
         "accepted": [*accepted, *(r["id"] for r in regions)]}
export = b"".join(ls.projects.exports.download_sync(project.id, export_type="JSON", download_all_tasks=True))
(out / "export.json").write_bytes(export)
print(json.dumps(done))
