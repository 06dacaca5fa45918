"""The checkpoints' Merkle tree (shared/eventstore/merkle.py), by properties: every leaf's audit
path leads to the root, a changed leaf or path does not, and the streaming builders agree with
RFC 6962's recursive definition."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.eventstore import merkle


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1, word for word: MTH of the hashed leaves (already leaf-hashed here)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def leaves_of(n: int, salt: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(f"{salt}:{i}".encode()) for i in range(n)]


trees = st.integers(min_value=1, max_value=130).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n - 1))
)


@given(st.integers(min_value=0, max_value=300))
def test_streamed_root_is_rfc6962s(n: int) -> None:
    leaves = leaves_of(n)
    assert merkle.root_of(leaves) == reference_root(leaves)


@given(trees)
def test_every_leafs_path_leads_to_the_root(tree: tuple[int, int]) -> None:
    n, index = tree
    leaves = leaves_of(n)
    root = merkle.root_of(leaves)
    path = merkle.audit_path(leaves, index)
    assert merkle.verify_inclusion(leaves[index], index, n, path, root)


@given(trees)
def test_the_streaming_path_builder_agrees(tree: tuple[int, int]) -> None:
    n, index = tree
    leaves = leaves_of(n)
    builder = merkle.PathBuilder(n)
    for i, leaf in enumerate(leaves):
        builder.add(leaf, target=i == index)
    assert builder.finish() == (index, merkle.audit_path(leaves, index), merkle.root_of(leaves))


@given(trees, st.data())
def test_a_changed_leaf_or_path_fails(tree: tuple[int, int], data: st.DataObject) -> None:
    n, index = tree
    leaves = leaves_of(n)
    root = merkle.root_of(leaves)
    path = merkle.audit_path(leaves, index)
    other = merkle.leaf_hash(b"not in the tree")
    assert not merkle.verify_inclusion(other, index, n, path, root)
    if path:
        at = data.draw(st.integers(min_value=0, max_value=len(path) - 1))
        bent = [*path[:at], merkle.leaf_hash(b"bent"), *path[at + 1 :]]
        assert not merkle.verify_inclusion(leaves[index], index, n, bent, root)
        assert not merkle.verify_inclusion(leaves[index], index, n, path[:-1], root)
    assert not merkle.verify_inclusion(leaves[index], index, n, [*path, other], root)
    if n > 1:
        moved = data.draw(st.integers(min_value=0, max_value=n - 1).filter(lambda i: i != index))
        assert not merkle.verify_inclusion(leaves[index], moved, n, path, root)
    # a tree with one leaf changed has another root
    changed = [*leaves[:index], other, *leaves[index + 1 :]]
    assert merkle.root_of(changed) != root


@given(
    st.tuples(
        st.text(), st.integers(0, 2**62), st.integers(0, 2**62), st.binary(min_size=32, max_size=32)
    ),
    st.tuples(
        st.text(), st.integers(0, 2**62), st.integers(0, 2**62), st.binary(min_size=32, max_size=32)
    ),
)
def test_the_leaf_encoding_is_injective(
    a: tuple[str, int, int, bytes], b: tuple[str, int, int, bytes]
) -> None:
    assert (merkle.encode_leaf(*a) == merkle.encode_leaf(*b)) == (a == b)


def test_out_of_range_and_misfit_paths_are_refused() -> None:
    leaves = leaves_of(5)
    root = merkle.root_of(leaves)
    assert not merkle.verify_inclusion(leaves[0], 5, 5, [], root)
    assert not merkle.verify_inclusion(leaves[0], 0, 0, [], root)
    assert merkle.verify_inclusion(leaves[0], 0, 1, [], leaves[0])
    with pytest.raises(ValueError, match="32 bytes"):
        merkle.encode_leaf("s", 0, 1, b"short")
    builder = merkle.PathBuilder(3)
    for leaf in leaves:  # five leaves where three were promised
        builder.add(leaf, target=leaf == leaves[1])
    with pytest.raises(ValueError, match="5 leaves, not 3"):
        builder.finish()
    missing = merkle.PathBuilder(2)
    for leaf in leaves[:2]:
        missing.add(leaf)
    with pytest.raises(ValueError, match="not in the tree"):
        missing.finish()
