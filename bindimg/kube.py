"""The images a `.kube` unit's YAML runs: `image:` of every container and init container.

`podman kube play` pulls each of them when the unit starts (podman
`pkg/domain/infra/abi/play.go`, `getImageAndLabelInfo`), so in an image root they are pulled
at first start unless bound or embedded. The YAML is read with ruamel.yaml (YAML 1.2, as
podman's Go reader, `sigs.k8s.io/yaml`), which keeps the line of each value; it is imported
only when a root has a `.kube` unit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bindimg.errors import InputError

_CONTAINER_LISTS = ("containers", "initContainers")


def kube_images(text: str, path: str) -> list[tuple[str, int]]:
    """(image, 1-based line) of each container and init container in the YAML documents of
    `text`, in document order; an InputError naming `path` and the line when it is not YAML."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    reader = YAML(typ="rt", pure=True)
    try:
        documents = list(reader.load_all(text))
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        reason = getattr(error, "problem", None) or getattr(error, "context", None) or type(error).__name__
        raise InputError(
            f"podman kube play cannot read this YAML ({reason}); fix it",
            path=path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    found: list[tuple[str, int]] = []
    seen: set[int] = set()  # an alias may repeat (or contain) a node: walk each once
    for document in documents:
        found.extend(_images(document, seen))
    return list(dict.fromkeys(found))


def _images(node: Any, seen: set[int]) -> Iterator[tuple[str, int]]:
    if id(node) in seen or not isinstance(node, (dict, list)):
        return
    seen.add(id(node))
    children = node.values() if isinstance(node, dict) else node
    if isinstance(node, dict):
        for key in _CONTAINER_LISTS:
            containers = node.get(key)
            if not isinstance(containers, list):
                continue
            for container in containers:
                image = container.get("image") if isinstance(container, dict) else None
                if isinstance(image, str) and image:
                    yield image, container.lc.value("image")[0] + 1
    for child in children:
        yield from _images(child, seen)
