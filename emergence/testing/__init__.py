"""Test helpers shipped with the package: Hypothesis strategies and slow reference counts.

They are public so that users can test their own graph builders against the same
invariants the toolkit is tested with.
"""

from emergence.testing.reference import brute_force_emergence, brute_force_walks

__all__ = ["brute_force_emergence", "brute_force_walks"]
