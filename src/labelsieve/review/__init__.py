"""Human review of a dataset version in the browser: boxes least agreement first, accept / reject / relabel with the
keyboard, the decisions written as the dataset's next version. `labelsieve review DATASET`, or in Python:
`ReviewServer(Review(open_dataset("datasets/glasses")))`."""

from labelsieve.review.server import ReviewServer
from labelsieve.review.session import DECISIONS, Review

__all__ = ["DECISIONS", "Review", "ReviewServer"]
