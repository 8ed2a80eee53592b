"""A store's table prefix goes into SQL unquoted: only ASCII letters, digits and
underscores are taken, the rest refused with the prefix named."""

from __future__ import annotations

import pytest

from reference_services.common.database import table_prefix


@pytest.mark.parametrize("prefix", ["", "inv_", "User2_"])
def test_a_plain_prefix_is_taken(prefix: str) -> None:
    assert table_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["a-b", "a b", "x;DROP", "a²", "é_", '"q"'])
def test_other_characters_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="ASCII letters, digits and underscores"):
        table_prefix(prefix)
