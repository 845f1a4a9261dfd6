"""The images a `.kube` unit's YAML runs: `image:` of every container and init container.

`podman kube play` pulls each of them when the unit starts (podman
`pkg/domain/infra/abi/play.go`, `getImageAndLabelInfo`), so in an image root they are pulled
at first start unless bound or embedded. The YAML is read with ruamel.yaml (YAML 1.2, as
podman's Go reader, `sigs.k8s.io/yaml`), which keeps the line of each value; it is imported
only when a root has a `.kube` unit.

What podman cannot read either makes `kube play` fail when the unit starts (podman
`pkg/util/kube.go`, `SplitMultiDocYAML` and `GetKubeKind`): bytes that are not UTF-8 (go-yaml
also takes UTF-16 with a byte-order mark), text that is not YAML (a syntax error, a duplicate
key, an undefined alias), a document that is neither empty nor a mapping (a scalar, a list).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Optional

from bindimg.errors import InputError, excerpt

# Kubernetes refuses an object over 1 MiB (etcd's request limit is 1.5 MiB); ruamel.yaml's pure
# Python parser reads about 0.1 MiB/s, so a larger file is left unread (a warning, not a wait).
MAX_KUBE_YAML_BYTES = 1024 * 1024

_CONTAINER_LISTS = ("containers", "initContainers")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class KubeYamlError(InputError):
    """Why a kube YAML file cannot be read (`message`: what is wrong, no advice), by `podman
    kube play` too (`podman_fails`) or only by bindimg: either way its images are unknown."""

    def __init__(self, message: str, *, path: str, line: Optional[int], podman_fails: bool = True):
        super().__init__(message, path=path, line=line)
        self.podman_fails = podman_fails


def kube_images(data: bytes, path: str) -> list[tuple[str, int]]:
    """(image, 1-based line) of each container and init container in the YAML documents of
    `data` (the file's bytes), in document order, each once.

    Raises KubeYamlError naming `path` and the line of the first problem (see the module)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    text = _decode(data, path)
    reader = YAML(typ="rt", pure=True)
    found: list[tuple[str, int]] = []
    seen: set[int] = set()  # an alias may repeat (or contain) a node: walk each once
    try:
        for node in reader.compose_all(text):
            document = reader.constructor.construct_document(node)
            if document is not None and not isinstance(document, dict):
                what = "a list" if isinstance(document, list) else "a single value"
                raise KubeYamlError(
                    f"a YAML document that is {what}, not a Kubernetes object (apiVersion:, kind:, …)",
                    path=path,
                    line=node.start_mark.line + 1,
                )
            found.extend(_images(document, seen))
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        reason = getattr(error, "problem", None) or getattr(error, "context", None) or type(error).__name__
        raise KubeYamlError(
            f"not YAML: {excerpt(str(reason))}",
            path=path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    except RecursionError:
        raise KubeYamlError(
            "nested too deep for bindimg's YAML parser",
            path=path,
            line=None,
            podman_fails=False,
        ) from None
    return list(dict.fromkeys(found))


def _decode(data: bytes, path: str) -> str:
    """The text of a YAML file as go-yaml decodes it: UTF-16 after its byte-order mark, else
    UTF-8 (an optional BOM dropped); anything else is a KubeYamlError at the first bad byte."""
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        raise KubeYamlError(
            f"not {'UTF-16' if encoding == 'utf-16' else 'UTF-8'} text (byte {error.start})",
            path=path,
            line=data.count(b"\n", 0, error.start) + 1,
        ) from None


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
