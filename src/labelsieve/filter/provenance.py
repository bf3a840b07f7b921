"""What every kept box carries about how it was labelled: the one definition of the provenance keys.

The filter returns one dict per returned detection, in the same order, as `CaptureAllResult.extra["provenance"]`; the data
manager stores each in its `BoundingBox.id` with `labelsieve.capture.format.encode_provenance`, so training and review read
it back with `decode_provenance` and the `.capture` files stay readable by any Viam tool.

| key | type | meaning |
| --- | --- | --- |
| `rule` | int | index of the rule in the filter's `rules` attribute |
| `question` | str | the question the verifier was asked |
| `proposer` | str | the detector service's name |
| `proposer_class` | str | the class the detector proposed (the rule's `detect`) |
| `proposer_score` | float | the detector's confidence in the box |
| `verifier` | str | the verifier service's name |
| `answer` | "yes" or "no" | the verified answer ("no" only for a rule with a `negative_label`) |
| `verifier_confidence` | float | the verifier's confidence in that answer |
| `agreement` | float | `proposer_score * verifier_confidence`, also the box's confidence |
| `crop` | [x0, y0, x1, y1] | the pixel region the verifier saw (the box plus the rule's padding) |

The agreement is a product because the label is right only when both stages are: each score is the stage's own estimate
that its part holds (there is a person here; this person wears glasses), so the product reads as the chance both hold if
their errors are independent. A weak proposal confirmed with certainty and a strong proposal confirmed hesitantly both
rank low, which is where review should look first.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

__all__ = ["Provenance"]


@dataclasses.dataclass(frozen=True)
class Provenance:
    rule: int
    question: str
    proposer: str
    proposer_class: str
    proposer_score: float
    verifier: str
    answer: Literal["yes", "no"]
    verifier_confidence: float
    crop: tuple[int, int, int, int]

    @property
    def agreement(self) -> float:
        return self.proposer_score * self.verifier_confidence

    def as_dict(self) -> dict[str, Any]:
        """The JSON-ready form returned in `extra["provenance"]` and stored in `BoundingBox.id`."""
        return dataclasses.asdict(self) | {"crop": list(self.crop), "agreement": self.agreement}
