"""Which changed lines of two tasks overlap, from their patches (context lines do not count)."""
from __future__ import annotations

from orchestration.vcs.collisions import hunk_ranges

PATCH_LINE_1 = "@@ -1,4 +1,4 @@\n-a\n+A\n b\n c\n d\n"
PATCH_LINE_3 = "@@ -1,6 +1,6 @@\n a\n b\n-c\n+C\n d\n e\n"
PATCH_INSERT_AFTER_2 = "@@ -1,4 +1,5 @@\n a\n b\n+new\n c\n d\n"


def overlap(one: str, other: str) -> bool:
    return any(s1 <= e2 and s2 <= e1 for s1, e1, _ in hunk_ranges(one) for s2, e2, _ in hunk_ranges(other))


def test_changes_to_different_lines_within_each_others_context_do_not_overlap():
    assert hunk_ranges(PATCH_LINE_1)[0][:2] == (1, 1) and hunk_ranges(PATCH_LINE_3)[0][:2] == (3, 3)
    assert not overlap(PATCH_LINE_1, PATCH_LINE_3)


def test_changes_to_the_same_line_overlap_and_the_hunk_quotes_the_changed_lines():
    assert overlap(PATCH_LINE_3, PATCH_LINE_3.replace("+C", "+see"))
    assert hunk_ranges(PATCH_LINE_3)[0][2] == "@@ -1,6 +1,6 @@\n-c\n+C"


def test_an_insertion_sits_between_lines():
    assert hunk_ranges(PATCH_INSERT_AFTER_2)[0][:2] == (2.5, 2.5)
    assert not overlap(PATCH_INSERT_AFTER_2, PATCH_LINE_3) and not overlap(PATCH_INSERT_AFTER_2, PATCH_LINE_1)
