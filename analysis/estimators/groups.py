"""Groups of factors: a vector variation, or factors a user declares together, as one.

- :func:`vector_groups`: the default grouping: the components ``key[x]``, ``key[0]``
  ... of one vector variation form the group ``key``.
- :func:`resolve_groups`: group names and member columns for a factor list, with
  the user's groups checked (unknown or repeated columns are refused).
- :func:`salib_groups`: the ``problem["groups"]`` list SALib expects.
- :func:`declared_groups`: groups a user declared by variation name (``grip =
  gripper.force, gripper.width``; a vector variation's name stands for all its
  components), checked and spelled out in factor columns.

A group index is the index of the group's factors taken jointly: for a camera
position ``(x, y, z)`` whose effect goes through its distance to the target, the
group's first-order index is what the three coordinates explain together, more than
the sum of their separate first-order indices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from varirec.errors import UnknownNameError
from varirec.variations.overrides import nearest_names

__all__ = ["declared_groups", "resolve_groups", "salib_groups", "vector_groups"]

_COMPONENT = re.compile(r"^(?P<key>.+)\[(?P<component>[^\[\]]+)\]$")


def vector_groups(factor_names: Sequence[str]) -> dict[str, list[str]]:
    """Components of each vector variation, keyed by the variation's name.

    Only variations with at least two component columns form a group.

    Example:
        >>> vector_groups(["cam[x]", "cam[y]", "cam[z]", "mass", "g[0]"])
        {'cam': ['cam[x]', 'cam[y]', 'cam[z]']}
    """
    out: dict[str, list[str]] = {}
    for name in factor_names:
        match = _COMPONENT.match(name)
        if match:
            out.setdefault(match["key"], []).append(name)
    return {key: cols for key, cols in out.items() if len(cols) > 1}


def resolve_groups(
    factor_names: Sequence[str], groups: Mapping[str, Sequence[str]] | None
) -> tuple[list[str], list[list[int]]]:
    """Factor names after grouping, and the column indices of each.

    Factors are ordered by their first column; columns in no group are factors of
    their own.

    Raises:
        UnknownNameError: a group names a column that is not a factor.
        ValueError: a column in two groups, an empty group, or a group named like a
            factor it does not consist of alone.

    Example:
        >>> resolve_groups(["a", "p[0]", "b", "p[1]"], {"p": ["p[0]", "p[1]"]})
        (['a', 'p', 'b'], [[0], [1, 3], [2]])
    """
    names = list(factor_names)
    index = {n: j for j, n in enumerate(names)}
    owner: dict[int, str] = {}
    for group, members in (groups or {}).items():
        if isinstance(members, str) or len(members) == 0:
            raise ValueError(
                f"`groups[{group!r}]` must be a non-empty list of factor names, got "
                f"{members!r}; pass e.g. {{'{group}': ['a', 'b']}}"
            )
        for member in members:
            if member not in index:
                raise UnknownNameError(
                    f"`groups[{group!r}]` names {member!r}, which is not a factor; "
                    f"{nearest_names(member, names)}"
                )
            j = index[member]
            if j in owner:
                raise ValueError(
                    f"factor {member!r} is in groups {owner[j]!r} and {group!r}; "
                    "a factor belongs to one group at most"
                )
            owner[j] = group
    for group, members in (groups or {}).items():
        # Named like a factor that keeps a row of its own, or like one of its members
        # beside others: one name for two things (a CSV row shows no members).
        j = index.get(group)
        if j is None:
            continue
        alone = j not in owner  # the factor keeps a row of its own
        beside_others = owner.get(j) == group and len(members) > 1
        if alone or beside_others:
            raise ValueError(
                f"group name {group!r} is also a factor's name: its row would read as that "
                f"factor's, not the group {list(members)}'s; name the group otherwise, e.g. "
                f"{group + '_group'!r}"
            )
    out_names: list[str] = []
    out_members: list[list[int]] = []
    seen: dict[str, int] = {}
    for j, name in enumerate(names):
        group = owner.get(j)
        if group is None:
            out_names.append(name)
            out_members.append([j])
        elif group in seen:
            out_members[seen[group]].append(j)
        else:
            seen[group] = len(out_names)
            out_names.append(group)
            out_members.append([j])
    return out_names, out_members


def salib_groups(
    factor_names: Sequence[str], groups: Mapping[str, Sequence[str]] | None
) -> list[str]:
    """One group name per factor, as SALib's ``problem["groups"]`` wants.

    Example:
        >>> salib_groups(["a", "p[0]", "p[1]"], {"p": ["p[0]", "p[1]"]})
        ['a', 'p', 'p']
    """
    names, members = resolve_groups(factor_names, groups)
    out = [""] * len(factor_names)
    for name, cols in zip(names, members, strict=True):
        for j in cols:
            out[j] = name
    return out


def declared_groups(
    groups: Mapping[str, Sequence[str]],
    columns: Mapping[str, Sequence[str]],
    *,
    vectors: bool = True,
) -> dict[str, list[str]]:
    """A user's groups in factor columns, checked; with ``vectors``, every vector
    variation that no group touches is a group of its own as well.

    Args:
        groups: group name -> members; a member is a variation (a vector variation
            stands for all its components) or one component column (``cam[x]``).
        columns: the factor columns of each variation, by variation name.
        vectors: also group the components of each vector variation left untouched.

    Raises:
        ValueError: an empty group, a column in two groups, or a group named after a
            variation it does not hold.
        UnknownNameError: a member that is neither a variation nor a factor column.

    Example:
        >>> cols = {"gripper.force": ["gripper.force"], "gripper.width": ["gripper.width"],
        ...         "cam": ["cam[x]", "cam[y]"]}
        >>> declared_groups({"grip": ["gripper.force", "gripper.width"]}, cols)
        {'grip': ['gripper.force', 'gripper.width'], 'cam': ['cam[x]', 'cam[y]']}
    """
    owner_of = {c: key for key, cols in columns.items() for c in cols}
    known = sorted({*columns, *owner_of})
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for group, members in groups.items():
        if isinstance(members, str) or len(members) == 0 or not str(group).strip():
            raise ValueError(
                f"group {group!r} must name at least one variation, got {members!r}; "
                "e.g. grip=gripper.force,gripper.width"
            )
        cols: list[str] = []
        for member in members:
            if member in columns:
                cols += [c for c in columns[member] if c not in cols]
            elif member in owner_of:
                cols += [member] if member not in cols else []
            else:
                raise UnknownNameError(
                    f"group {group!r} names {member!r}, which is no variation of the dataset; "
                    f"{nearest_names(member, known)}"
                )
        for col in cols:
            if col in owner:
                raise ValueError(
                    f"{col!r} is in groups {owner[col]!r} and {group!r}; a variation belongs to "
                    "one group at most: remove it from one of them"
                )
            owner[col] = group
        clash = columns.get(group, [group] if group in owner_of else [])
        if clash and not set(clash) <= set(cols):
            raise ValueError(
                f"group {group!r} has the name of a variation it does not hold; "
                f"name the group otherwise (e.g. {group}_group)"
            )
        out[group] = cols
    if vectors:
        for key, cols in columns.items():
            if len(cols) > 1 and not any(c in owner for c in cols) and key not in out:
                out[key] = list(cols)
    return out
