"""Checkers for the notebooks' exercises: ``check_*`` functions that say whether a learner's
answer is right, and why not when it is not. One module per notebook (``nb01`` ... ``nb05``)."""
