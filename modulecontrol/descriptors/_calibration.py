"""Calibrated overlays (``kind: TwinCalibration``) applied to a plant's simulator models.

A fit of the digital twin (``modulecontrol twin fit --overlay FILE``) writes its estimates as
an overlay: per module tag, the top-level simulator parameter keys it calibrated, with the
fit's provenance. The overlay is applied here, in the descriptors layer, because two readers
need exactly the same result: the plant file's ``calibrations:`` key (every command that
loads the plant: ``validate``, ``run``, ``sim``, the twin) and ``optimize --calibration``.
The twin writes the file; this module only reads it, so the loader needs nothing from the
twin's layer.

Rules, each refused at the overlay's own YAML key: the file exists and is a TwinCalibration;
it was made for this plant (its ``plant_name``, or for older overlays its ``plant`` file
name); every tag is a module of the plant that is simulated (a real module's model is run by
nothing that reads the plant, so its calibration could only be a silent no-op) and whose type
has a simulator; every key is one of that simulator's parameters; no key of a module is set
by two overlays (which one should win cannot be guessed, and a later overlay silently undoing
an earlier one would hide a calibration). An overlay's key replaces the plant file's own
``overrides.simulator`` value of that key: the calibrated value supersedes the written one.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError

from modulecontrol.descriptors._base import Ident, Model
from modulecontrol.descriptors._module import ModuleType, merge_simulator_overrides
from modulecontrol.errors import ConfigError, Location, Problem, did_you_mean
from modulecontrol.yamlio import MAX_YAML_BYTES, YamlDoc, load_yaml_text, validation_problems

if TYPE_CHECKING:
    from modulecontrol.descriptors._loader import PlantConfig

__all__ = ["Calibration", "CalibrationEntry", "TwinCalibration", "calibrate"]


class CalibrationOverrides(Model):
    simulator: dict[str, Any] = Field(min_length=1)
    """Top-level simulator parameter keys, each written whole (a ``reactions`` list entire):
    they replace the instance's value of that key."""


class CalibrationEntry(Model):
    """One module's calibrated simulator parameters."""

    tag: Ident
    overrides: CalibrationOverrides


class TwinCalibration(Model):
    """The document ``twin fit --overlay`` writes (see docs/digital-twin.md)."""

    kind: Literal["TwinCalibration"]
    plant: str
    """File name of the plant file the fit read (informative; see ``plant_name``)."""
    plant_name: str | None = None
    """The ``name:`` of the plant the fit read: an overlay is applied only to that plant.
    Overlays written before this key existed are matched by ``plant`` (the file name)."""
    provenance: dict[str, Any] = Field(default_factory=dict)
    """What the fit used and found: runs, windows, estimates, statistics, warnings."""
    modules: list[CalibrationEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Calibration:
    """An overlay in effect on a plant: where it is, its content hash, what it sets."""

    file: str
    """The path as read (the plant's ``calibrations:`` entry resolved against its folder)."""
    sha256: str
    """SHA-256 of the file's bytes, as a run record keeps it (``sha256sum`` gives the same)."""
    overlay: TwinCalibration
    doc: YamlDoc

    def sets(self, tag: str) -> list[str]:
        """The simulator keys this overlay sets on ``tag`` (none if it does not name it)."""
        return [k for e in self.overlay.modules if e.tag == tag for k in e.overrides.simulator]

    def locate(self, tag: str, path: tuple[str | int, ...] = (), *,
               key: bool = False) -> Location:
        """Where the value at ``path`` of ``tag``'s simulator overrides is written."""
        i = next(i for i, e in enumerate(self.overlay.modules) if e.tag == tag)
        return self.doc.locate(("modules", i, "overrides", "simulator", *path), key=key)

    def summary(self) -> str:
        """One line of provenance for people: runs and their times, estimates, statistics
        (what ``validate`` and ``describe`` print)."""
        p = self.overlay.provenance
        if not p:
            return "no provenance (not written by `twin fit`)"
        parts = []
        runs = p.get("runs")
        if isinstance(runs, list) and runs:
            text = "runs " + ", ".join(map(str, runs))
            windows = [w for w in p.get("windows") or [] if isinstance(w, list) and len(w) == 2]
            if windows:
                with contextlib.suppress(TypeError, ValueError, OverflowError):
                    text += f" ({_iso(min(w[0] for w in windows))} to " \
                            f"{_iso(max(w[1] for w in windows))})"
            parts.append(text)
        for e in p.get("estimates") or []:
            if isinstance(e, dict) and isinstance(e.get("value"), int | float):
                ci = e.get("ci95")
                bounds = ""
                if isinstance(ci, list) and len(ci) == 2 and all(
                        isinstance(c, int | float) and math.isfinite(c) for c in ci):
                    bounds = f" [{ci[0]:.5g}, {ci[1]:.5g}]"
                elif ci is not None:
                    bounds = " [not identifiable]"
                parts.append(f"{e.get('name')} = {e['value']:.5g} {e.get('unit', '')}".rstrip()
                             + bounds)
        if isinstance(p.get("n_points"), int):
            parts.append(f"{p['n_points']} points")
        if isinstance(p.get("rms_scaled_residual"), int | float):
            parts.append(f"rms scaled residual {p['rms_scaled_residual']:.3g}")
        warnings = p.get("warnings")
        if isinstance(warnings, list):
            parts.append(f"{len(warnings)} warning{'' if len(warnings) == 1 else 's'}")
        return "; ".join(parts) or "provenance without runs or estimates"

    def record(self, plant_dir: str | Path | None = None) -> dict[str, Any]:
        """What a run record keeps of the overlay: path (relative to ``plant_dir``, the plant
        file's folder, as the plant's ``calibrations:`` writes it), content hash, the runs it
        was fitted on (the hash leads to the ``twin calibration`` audit entry for the rest)."""
        runs = self.overlay.provenance.get("runs")
        file = self.file
        if plant_dir is not None:
            with contextlib.suppress(ValueError):  # another drive (Windows): keep it whole
                file = Path(os.path.relpath(Path(self.file).resolve(),
                                            Path(plant_dir).resolve())).as_posix()
        return {"file": file, "sha256": self.sha256,
                "modules": {e.tag: sorted(e.overrides.simulator) for e in self.overlay.modules},
                "runs": runs if isinstance(runs, list) else []}


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(float(t), _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def read_calibration(path: str | Path, where: Location | None = None) -> Calibration:
    """Read and validate an overlay file on its own (schema only, no plant).

    ``where`` is the place that named the file (the plant's ``calibrations:`` entry), so a
    missing file is reported there as well as by name."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError.single(f"calibration file {p} not found", where or Location(str(p))
                                 ) from None
    except OSError as exc:
        raise ConfigError.single(f"cannot read calibration file {p}: {exc}",
                                 where or Location(str(p))) from None
    if len(data) > 4 * MAX_YAML_BYTES:  # decoding first would cost before the size check
        raise ConfigError.single(f"file is larger than {MAX_YAML_BYTES} bytes",
                                 Location(str(p)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError.single(f"cannot read file: {exc}", Location(str(p))) from None
    # the same text ``load_yaml`` parses (universal newlines); the hash is of the bytes
    doc = load_yaml_text(text.replace("\r\n", "\n").replace("\r", "\n"), str(p))
    if not isinstance(doc.data, dict) or doc.data.get("kind") != "TwinCalibration":
        given = doc.data.get("kind") if isinstance(doc.data, dict) else None
        what = f"a {given} document" if isinstance(given, str) else "not a TwinCalibration"
        raise ConfigError.single(
            f"{what}: a calibration is the 'kind: TwinCalibration' overlay that `modulecontrol"
            " twin fit --overlay` writes", doc.locate(("kind",) if given else ()))
    try:
        overlay = TwinCalibration.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, doc, TwinCalibration)) from None
    return Calibration(str(p), hashlib.sha256(data).hexdigest(), overlay, doc)


def calibrate(config: PlantConfig, path: str | Path,
              where: Location | None = None) -> PlantConfig:
    """``config`` with the overlay at ``path`` applied on top of what it has (its own
    ``calibrations`` included): the one implementation behind the plant file's
    ``calibrations:`` and ``optimize --calibration``. Returns a new config (the given one is
    untouched); every refusal is a :class:`ConfigError` located in the overlay."""
    from dataclasses import replace

    cal = read_calibration(path, where)
    doc, overlay = cal.doc, cal.overlay
    for other in config.calibrations:
        if Path(other.file).resolve() == Path(cal.file).resolve():
            raise ConfigError.single(
                f"calibration {cal.file} is already in effect (included by "
                f"{Path(config.file).name}'s 'calibrations')", where or doc.locate(()))
    plant = config.plant
    if overlay.plant_name is not None:
        if overlay.plant_name != plant.name:
            raise ConfigError.single(
                f"this overlay was fitted on plant '{overlay.plant_name}', not on "
                f"'{plant.name}' ({config.file})", doc.locate(("plant_name",)))
    elif overlay.plant != Path(config.file).name:
        raise ConfigError.single(
            f"this overlay was fitted on plant file '{overlay.plant}', not on "
            f"{Path(config.file).name}", doc.locate(("plant",)))
    tags = {m.tag: m for m in plant.modules}
    types = dict(config.instance_types)
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, entry in enumerate(overlay.modules):
        tag, given = entry.tag, entry.overrides.simulator
        if tag in seen:
            problems.append(Problem(f"module {tag} appears twice in this overlay",
                                    doc.locate(("modules", i, "tag"))))
            continue
        seen.add(tag)
        inst = tags.get(tag)
        if inst is None or tag not in types:
            problems.append(Problem(f"no module '{tag}' in plant {plant.name} ({config.file})"
                                    f"{did_you_mean(tag, tags)}",
                                    doc.locate(("modules", i, "tag"))))
            continue
        if not inst.simulated and inst.endpoint is not None:
            problems.append(Problem(
                f"module {tag} is not simulated (real hardware, 'simulated: false' in "
                f"{Path(config.file).name}): nothing that reads this plant runs its model, so "
                "the calibration would have no effect; include it in a plant file where "
                f"{tag} is simulated, or remove this entry", doc.locate(("modules", i, "tag"))))
            continue
        mt = types[tag]
        if mt.simulator is None:
            problems.append(Problem(f"module {tag}: type {mt.name} has no simulator to "
                                    "calibrate", doc.locate(("modules", i, "tag"))))
            continue
        known = mt.simulator.overridable()
        bad = False
        for key in given:
            if key not in known:
                bad = True
                problems.append(Problem(
                    f"{tag}: '{key}' is not a simulator parameter of {mt.name}"
                    f"{did_you_mean(key, known)}",
                    doc.locate(("modules", i, "overrides", "simulator", key), key=True)))
                continue
            for other in config.calibrations:
                if key in other.sets(tag):
                    bad = True
                    first = other.locate(tag, (key,), key=True)
                    problems.append(Problem(
                        f"{tag}: '{key}' is also set by calibration {other.file} ({first}); "
                        "two overlays may not set the same key (which should win cannot be "
                        "guessed): fit them together, or drop one",
                        doc.locate(("modules", i, "overrides", "simulator", key), key=True)))
        if bad:
            continue
        try:
            types[tag] = _with_parameters(mt, given)
        except (ValidationError, ValueError) as exc:
            errs = exc.errors(include_url=False) if isinstance(exc, ValidationError) else []
            detail = errs[0]["msg"].removeprefix("Value error, ") if errs else str(exc)
            problems.append(Problem(f"{tag}: {detail}",
                                    doc.locate(("modules", i, "overrides", "simulator"))))
    if problems:
        raise ConfigError(problems)
    return replace(config, instance_types=types, calibrations=[*config.calibrations, cal])


def _with_parameters(mt: ModuleType, given: dict[str, Any]) -> ModuleType:
    """The type with ``given`` top-level simulator keys replaced, validated as a plant's
    ``overrides.simulator`` is (:func:`~modulecontrol.descriptors.apply_overrides`)."""
    data = mt.model_dump(by_alias=True, exclude_none=True)
    merge_simulator_overrides(data["simulator"], given)
    return ModuleType.model_validate(data)
