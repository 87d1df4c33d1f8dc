"""Model folders: `model.safetensors` (weights only) + `metadata.json`, as specified in docs/engine-interface.md.

Loading never unpickles. A model can arrive from anywhere (a colleague, a download), and a pickle or `torch.save`
file runs arbitrary code when loaded, so the weights file is read as bytes, sniffed for pickle/zip signatures,
checked against the SHA-256 in the metadata, and only then parsed by safetensors, from the very bytes that were
hashed. Saving writes new temporaries and renames them (`atomic_write`), so an interrupted export leaves no
half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emim import __version__
from emim.atomic_write import write_files
from emim.contract import METADATA_FILE, WEIGHTS_FILE
from emim.data.modalities import pattern_problem
from emim.data.spacing import spacing_problem
from emim.errors import EmimError
from emim.model_metadata import FORMAT, FORMAT_VERSION, SCHEMA_FILE, schema_problems
from emim.safepaths import check_safe_name

if TYPE_CHECKING:
    import torch

# SHA-256 of the rest of metadata.json, so a hand edit or a damaged copy (two modalities swapped: results change
# while the weights still match `sha256`) is refused. A checksum, not a signature: whoever edits the file on purpose
# can recompute it. Models exported before it existed lack it and are read as before.
METADATA_CHECKSUM = "metadata_sha256"

# The base preset's UNETR is about 0.4 GB in float32: a weights file past this is not an emim model, and is refused
# from its size before a byte of it is read into memory (a 6 GB file used to be read whole to be hashed).
MAX_WEIGHTS_BYTES = 4 * 2**30
_PICKLE_MAGIC = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def model_folder(model: str | os.PathLike) -> Path:
    """The absolute model folder: accept the folder, either of its two files (people often point at the file they can
    see), or the name of a model shipped with the extension (`emim.bundled.resolve_model`)."""
    from emim.bundled import bundled_models, resolve_model

    path = resolve_model(model)
    if path.is_file() and path.name in (WEIGHTS_FILE, METADATA_FILE):
        return path.parent
    if not path.is_dir():
        shipped = ", ".join(p.name for p in bundled_models()) or "none in this installation"
        raise EmimError(f"{path} is not a model folder; give the folder that holds {WEIGHTS_FILE} and "
                        f"{METADATA_FILE} (models exported by emim are such folders), or the name of a shipped "
                        f"model ({shipped}).")
    return path


def unbuildable(where: object, error: Exception) -> EmimError:
    """The error for a model whose metadata describes a network this engine cannot build."""
    return EmimError(f"{where}: its metadata.json describes a network this engine cannot build ({error}); "
                     "re-export the model with emim.")


def _validate(metadata: dict[str, Any], where: str) -> None:
    """Check what loaders rely on, so a bad file fails here with its name instead of deep inside inference: the
    schema (`emim.model_metadata`), then what a schema cannot say."""
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise EmimError(f"{where} is not an emim model description (format {found!r}, expected {FORMAT!r}); "
                        "give a folder exported by emim.")
    version = metadata.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise EmimError(f"{where} has format_version {version}, newer than this emim {__version__} reads "
                        f"({FORMAT_VERSION}); upgrade emim to load this model.")
    problems = schema_problems(metadata)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise EmimError(f"{where} does not follow the model metadata schema ({SCHEMA_FILE.name}): {problems[0]}"
                        f"{more}. Re-export the model with emim.")
    fix = "Correct the name in metadata.json, or re-export the model with emim."
    for modality in metadata["modalities"]:
        check_safe_name(modality["name"], f"{where}: modality name", fix)
        patterns = modality.get("patterns") or []
        for pattern in patterns if isinstance(patterns, list) else [patterns]:
            problem = pattern_problem(pattern)
            if problem:
                raise EmimError(f"{where}: the name pattern {str(pattern)[:80]!r} of modality {modality['name']!r} "
                                f"{problem}. {fix}")
    spacing = (metadata.get("preprocessing") or {}).get("spacing")
    if spacing is not None and spacing_problem(spacing):
        raise EmimError(f"{where}: the training spacing (preprocessing.spacing) {spacing_problem(spacing)}. {fix}")
    values = {label["value"] for label in metadata.get("labels") or []}
    for region in metadata.get("regions") or []:
        if not set(region["labels"]) <= values:
            raise EmimError(f"{where}: region {region['name']!r} takes the labels {region['labels']}, but the label "
                            f"values are {sorted(values)}. Re-export the model with emim.")
        check_safe_name(region["name"], f"{where}: region name", fix)


def metadata_checksum(metadata: dict[str, Any]) -> str:
    """SHA-256 of the metadata without its own checksum, as canonical JSON (sorted keys, no spaces)."""
    rest = {key: value for key, value in metadata.items() if key != METADATA_CHECKSUM}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def with_metadata_checksum(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata with its `metadata_sha256` (re)computed, as `save_model` writes it."""
    return {**metadata, METADATA_CHECKSUM: metadata_checksum(metadata)}


def load_metadata(model: str | os.PathLike) -> dict[str, Any]:
    """Read and validate `metadata.json` of a model folder (does not touch the weights)."""
    path = model_folder(model) / METADATA_FILE
    if not path.is_file():
        raise EmimError(f"{path} is missing; a model folder needs {METADATA_FILE} next to {WEIGHTS_FILE}. "
                        "Copy the whole folder, or re-export the model with emim.")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise EmimError(f"{path} is not valid JSON ({error}); copy the model folder again or re-export it.") from None
    if isinstance(metadata, dict) and METADATA_CHECKSUM in metadata \
            and metadata[METADATA_CHECKSUM] != metadata_checksum(metadata):
        raise EmimError(f"{path} was changed after the model was exported (its {METADATA_CHECKSUM} does not match "
                        "its content), and an edited description can make the same weights read the wrong inputs. "
                        "Copy the model folder again from its source, or re-export the model with emim.")
    _validate(metadata, str(path))
    return metadata


def _safetensors_problem(data: bytes) -> str | None:
    """Why `data` is not a complete safetensors file, or None. Reads only the JSON header, never the tensors."""
    if len(data) < 8:
        return f"it is truncated ({len(data)} bytes, shorter than the 8-byte safetensors header length)"
    (header_len,) = struct.unpack("<Q", data[:8])
    if data[8:9] != b"{":
        return "it is not a safetensors file (no JSON header after the length field)"
    if 8 + header_len > len(data):
        return f"it is truncated ({len(data)} bytes, but its header alone needs {8 + header_len})"
    try:
        header = json.loads(data[8:8 + header_len])
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"),
                  default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return "its safetensors header is not valid"
    expected = 8 + header_len + end
    if expected > len(data):
        return f"it is truncated ({len(data)} bytes, but its tensors need {expected})"
    if expected < len(data):
        return f"it has {len(data) - expected} unexpected bytes after its tensors"
    return None


def read_weights(model: str | os.PathLike, metadata: dict[str, Any]) -> bytes:
    """The weights file's bytes, refused unless they are a complete safetensors file matching the metadata hash."""
    path = model_folder(model) / WEIGHTS_FILE
    if not path.is_file():
        raise EmimError(f"{path} is missing; a model folder needs {WEIGHTS_FILE} next to {METADATA_FILE}. "
                        "Copy the whole folder, or re-export the model with emim.")
    size = path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise EmimError(f"{path} is refused: it is {size / 2**30:.1f} GiB, more than any emim model "
                        f"({MAX_WEIGHTS_BYTES / 2**30:.0f} GiB at most), so it is not the weights of an exported "
                        "model. Copy the model folder again, or re-export it with emim.")
    data = path.read_bytes()
    if data.startswith(_PICKLE_MAGIC) and data[8:9] != b"{" or data.startswith(_ZIP_MAGIC):
        raise EmimError(f"{path} is a pickle/torch.save file, refusing to unpickle (loading a pickle can run any "
                        "code it contains); re-export with emim, which writes safetensors.")
    digest = hashlib.sha256(data).hexdigest()
    if digest != metadata["sha256"]:
        problem = _safetensors_problem(data)
        reason = problem if problem and "truncated" in problem else "the file was modified or corrupted"
        raise EmimError(f"{path} does not match the SHA-256 in {METADATA_FILE}: {reason}. Copy the model folder "
                        "again from its source, or re-export it with emim.")
    problem = _safetensors_problem(data)
    if problem:
        raise EmimError(f"{path} is refused: {problem}. Copy the model folder again, or re-export it with emim.")
    return data


def load_model(model: str | os.PathLike, device: str = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, metadata) of a model folder, after the checks of `read_weights`."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    metadata = load_metadata(model)
    data = read_weights(model, metadata)
    try:
        tensors = load(data)
    except SafetensorError as error:
        raise EmimError(f"{model_folder(model) / WEIGHTS_FILE} is not a valid safetensors file ({error}); "
                        "re-export the model with emim.") from None
    return {name: tensor.to(device) for name, tensor in tensors.items()}, metadata


def save_model(folder: str | os.PathLike, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Write a model folder atomically; stamps format, format_version, engine_version and sha256 into the metadata.

    Returns the folder. Bad metadata is refused before anything is written, and on any later failure the folder
    holds only what it held before.
    """
    import torch
    from safetensors.torch import save

    from emim.progress import json_safe

    folder = Path(folder)
    bad = [name for name, tensor in state_dict.items() if not isinstance(tensor, torch.Tensor)]
    if bad:
        raise TypeError(f"state_dict values must be tensors; not: {', '.join(bad)}")
    # through JSON once, as a reader will see it: tuples become lists, numpy/torch scalars numbers, paths strings,
    # NaN/Inf null
    # clone: safetensors refuses tensors that share memory (tied weights, views)
    data = save({name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in state_dict.items()},
                metadata={"format": "pt"})
    text = json.dumps({**metadata, "format": FORMAT, "format_version": FORMAT_VERSION,
                       "engine_version": __version__, "sha256": hashlib.sha256(data).hexdigest()},
                      default=lambda value: value.item() if hasattr(value, "item") else str(value))
    stamped = with_metadata_checksum(json_safe(json.loads(text)))
    _validate(stamped, f"metadata for {folder}")
    files = {folder / WEIGHTS_FILE: data,
             folder / METADATA_FILE: json.dumps(stamped, indent=2, allow_nan=False) + "\n"}
    write_files(files)  # weights first: a crash between the renames leaves a hash mismatch, which loading refuses
    return folder


def describe_model(metadata: dict[str, Any]) -> str:
    """Human-readable summary of a model's metadata, for `emim model-info`."""
    lines = [f"{metadata.get('name') or 'unnamed model'} ({metadata['task']})"]
    if metadata.get("description"):
        lines.append(f"  {metadata['description']}")
    lines.append(f"format: {metadata['format']} v{metadata['format_version']}, "
                 f"written by emim {metadata['engine_version']}")
    lines.append("modalities (in input order):")
    for index, modality in enumerate(metadata["modalities"]):
        title = f" ({modality['title']})" if modality.get("title") else ""
        patterns = f"  auto-assign: {', '.join(modality['patterns'])}" if modality.get("patterns") else ""
        lines.append(f"  {index}: {modality['name']}{title}{patterns}")
    config = metadata["model_config"]
    lines.append("network: " + ", ".join(f"{key} {config[key]}" for key in
                                         ("crop_size", "patch_size", "embed_dim", "depth", "num_heads")
                                         if key in config))
    for key in ("network", "preprocessing", "inference"):
        if metadata.get(key):
            lines.append(f"{key}: " + ", ".join(f"{k} {v}" for k, v in metadata[key].items()))
    if metadata.get("labels"):
        lines.append("labels:")
        for label in metadata["labels"]:
            lines.append(f"  {label['value']}: {label['name']}  colour {tuple(label['color'])}")
    if metadata.get("regions"):
        lines.append("output channels: " + ", ".join(f"{r['name']} = labels {r['labels']}"
                                                     for r in metadata["regions"]))
    if metadata.get("classes"):
        lines.append("classes: " + ", ".join(f"{c['value']} = {c['name']}" for c in metadata["classes"]))
    if metadata.get("provenance"):
        lines.append("provenance:")
        for key, value in metadata["provenance"].items():
            lines.append(f"  {key}: {value}")
    lines.append(f"sha256: {metadata['sha256']}")
    lines.append(f"metadata checksum: {metadata[METADATA_CHECKSUM]}" if METADATA_CHECKSUM in metadata
                 else "metadata checksum: none (exported before emim wrote one); an edit would go unnoticed")
    return "\n".join(lines)
