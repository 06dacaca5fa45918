"""The Merkle tree a checkpoint commits to (docs/architecture.md §2a). Pure: no I/O.

The tree is RFC 6962's (Certificate Transparency, §2.1): SHA-256, a leaf hashed as
``H(0x00 || leaf)`` and a node as ``H(0x01 || left || right)`` (so a leaf can never pass for a
node), and a tree of ``n`` leaves split at the largest power of two below ``n``. The root of no
leaves is ``H("")``.

One leaf per stream, sorted by stream name (Unicode code point order, which is the byte order of
the UTF-8 names and PostgreSQL's ``COLLATE "C"``): the stream's head as of a position, encoded by
``encode_leaf``. Roots and audit paths are computed while the leaves stream past, with memory
logarithmic in their number, so a log of millions of streams never has to fit in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32


def encode_leaf(stream: str, version: int, position: int, head_hash: bytes) -> bytes:
    """The canonical bytes of a stream's head: its name (UTF-8, 4-byte big-endian length first),
    its head version and the head event's global position (8 bytes each, big-endian), and the
    head event's chain hash (32 bytes)."""
    if len(head_hash) != HASH_SIZE:
        raise ValueError(f"a head hash has {HASH_SIZE} bytes, got {len(head_hash)}")
    name = stream.encode()
    return (
        len(name).to_bytes(4, "big")
        + name
        + version.to_bytes(8, "big")
        + position.to_bytes(8, "big")
        + head_hash
    )


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class RootBuilder:
    """The root of leaves added one by one. Keeps the roots of the perfect subtrees the leaves so
    far make (one per set bit of their count): RFC 6962's root is those folded right to left."""

    def __init__(self) -> None:
        self.count = 0
        self.stack: list[tuple[int, bytes]] = []  # (size, root) of perfect subtrees, left first

    def add(self, hashed_leaf: bytes) -> None:
        size, node = 1, hashed_leaf
        while self.stack and self.stack[-1][0] == size:
            left_size, left = self.stack.pop()
            size, node = left_size + size, node_hash(left, node)
        self.stack.append((size, node))
        self.count += 1

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        node = self.stack[-1][1]
        for _, left in reversed(self.stack[:-1]):
            node = node_hash(left, node)
        return node


def root_of(hashed_leaves: Iterable[bytes]) -> bytes:
    builder = RootBuilder()
    for h in hashed_leaves:
        builder.add(h)
    return builder.root()


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges [start, end) whose subtree roots make up the audit path of leaf ``index``
    in a tree of ``size`` leaves, from the leaf's sibling up. They partition every leaf but
    ``index``."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return list(reversed(ranges))


def audit_path(hashed_leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of one leaf, from all of them in memory (small trees, tests)."""
    return [root_of(hashed_leaves[a:b]) for a, b in path_ranges(index, len(hashed_leaves))]


class PathBuilder:
    """The audit path of one leaf of a tree of ``size`` leaves, while all of them stream past in
    order: call ``add`` for each (``target=True`` for the one to prove), then ``finish``.

    The siblings left of the target are the perfect subtrees a ``RootBuilder`` holds when the
    target arrives; those right of it partition the leaves after it into consecutive ranges,
    each rooted by its own builder. Memory is logarithmic in ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tree = RootBuilder()
        self.index: int | None = None
        self._known: dict[tuple[int, int], bytes] = {}
        self._right: list[tuple[int, int]] = []
        self._current: RootBuilder | None = None

    def add(self, hashed_leaf: bytes, *, target: bool = False) -> None:
        at = self.tree.count
        if target:
            if self.index is not None:
                raise ValueError("only one leaf can be proven at a time")
            if at >= self.size:
                raise ValueError(f"the tree has more than {self.size} leaves")
            self.index = at
            start = 0
            for size, node in self.tree.stack:
                self._known[(start, start + size)] = node
                start += size
            self._right = [r for r in path_ranges(at, self.size) if r[0] > at]
            self._right.sort()
        elif self.index is not None and self._right:
            if self._current is None:
                self._current = RootBuilder()
            self._current.add(hashed_leaf)
            start, end = self._right[0]
            if self._current.count == end - start:
                self._known[(start, end)] = self._current.root()
                self._right.pop(0)
                self._current = None
        self.tree.add(hashed_leaf)

    def finish(self) -> tuple[int, list[bytes], bytes]:
        """(the target's index, its audit path, the tree's root). Raises ValueError when the
        target never came or the tree does not have ``size`` leaves."""
        if self.index is None:
            raise ValueError("the leaf to prove is not in the tree")
        if self.tree.count != self.size:
            raise ValueError(f"the tree has {self.tree.count} leaves, not {self.size}")
        path = [self._known[r] for r in path_ranges(self.index, self.size)]
        return self.index, path, self.tree.root()


def root_from_path(hashed_leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root an audit path leads to from a leaf (RFC 9162 §2.1.3.2). Raises ValueError for a
    path that cannot belong to a leaf ``index`` of a tree of ``size`` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, node = index, size - 1, hashed_leaf
    for sibling in path:
        if len(sibling) != HASH_SIZE or sn == 0:
            raise ValueError("the audit path does not fit the tree")
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("the audit path is too short for the tree")
    return node


def verify_inclusion(
    hashed_leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    try:
        return root_from_path(hashed_leaf, index, size, path) == root
    except ValueError:
        return False
