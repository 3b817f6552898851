"""Loading descriptors from YAML with every problem located, and the built-in type library."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from modulecontrol.descriptors._calibration import Calibration, calibrate, read_calibration
from modulecontrol.descriptors._module import ModuleType, merge_simulator_overrides
from modulecontrol.descriptors._plant import Handshake, ModuleInstance, Plant
from modulecontrol.descriptors._topology import shutdown_problems
from modulecontrol.errors import ConfigError, Location, Problem, did_you_mean
from modulecontrol.yamlio import YamlDoc, dump_yaml, load_yaml, load_yaml_text, validation_problems

M = TypeVar("M", bound=BaseModel)

KINDS = ("ModuleType", "Plant", "Recipe", "Species", "Scenario")


def _validate(model: type[M], doc: YamlDoc, context: dict[str, Any] | None = None) -> M:
    if not isinstance(doc.data, dict):
        raise ConfigError.single(
            f"expected a mapping of keys (a {model.__name__} document), "
            f"got {type(doc.data).__name__}",
            doc.locate(()),
        )
    _check_kind(model, doc)
    try:
        return model.model_validate(doc.data, context=context)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, doc, model)) from None


def _check_kind(model: type[BaseModel], doc: YamlDoc) -> None:
    """One clear error for a document of another kind (a recipe given where a module type
    is expected), instead of a screenful of 'unknown key' errors that all follow from it."""
    assert isinstance(doc.data, dict)
    given = doc.data.get("kind")
    kind_field = model.model_fields.get("kind")
    if not isinstance(given, str) or kind_field is None:
        return
    expected = [a for a in get_args(kind_field.annotation) if isinstance(a, str)]
    known = {"ModuleType", "Plant", "Recipe", "Scenario", "TwinCalibration",
             *_EXTRA_KINDS}  # misspelt: pydantic
    if expected and given not in expected and given in known:  # says it, with a suggestion
        raise ConfigError.single(
            f"this is a {given} document, not a {' or '.join(expected)}", doc.locate(("kind",)))


def _located(doc: YamlDoc, items: Iterable[tuple[tuple[str | int, ...], str]]) -> list[Problem]:
    return [Problem(msg, doc.locate(path)) for path, msg in items]


def module_type_from_doc(doc: YamlDoc) -> ModuleType:
    """Validate a parsed module-type document, reporting every cross-reference at its line."""
    mt = _validate(ModuleType, doc, {"defer_references": True})
    problems = _located(doc, mt.reference_problems())
    if problems:
        raise ConfigError(problems)
    return mt


def load_module_type(path: str | Path) -> ModuleType:
    return module_type_from_doc(load_yaml(path))


def module_type_from_text(text: str, file: str = "<string>") -> ModuleType:
    return module_type_from_doc(load_yaml_text(text, file))


def load_handshake(path: str | Path) -> Handshake:
    """A handshake policy on its own (the ``handshake:`` mapping of a plant's module), for
    ``mtp check --handshake``: the live check drives a PEA as the plant would."""
    return _validate(Handshake, load_yaml(path))


@dataclass
class TypeLibrary:
    """Module types by name, remembering where each was defined (for duplicate errors)."""

    types: dict[str, ModuleType] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def add(self, mt: ModuleType, origin: str, location: Location | None = None) -> None:
        if mt.name in self.types and self.origins[mt.name] != origin:
            raise ConfigError.single(
                f"module type '{mt.name}' is already defined in {self.origins[mt.name]}", location
            )
        self.types[mt.name] = mt
        self.origins[mt.name] = origin

    def get(self, name: str) -> ModuleType:
        try:
            return self.types[name]
        except KeyError:
            raise KeyError(
                f"unknown module type '{name}'{did_you_mean(name, self.types)}"
            ) from None

    def copy(self) -> TypeLibrary:
        return TypeLibrary(dict(self.types), dict(self.origins))

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def __iter__(self) -> Any:
        return iter(sorted(self.types))


_BUILTIN: TypeLibrary | None = None


def builtin_types() -> TypeLibrary:
    """The module types shipped with modulecontrol (``modulecontrol/descriptors/builtin``)."""
    global _BUILTIN
    if _BUILTIN is None:
        lib = TypeLibrary()
        folder = resources.files("modulecontrol.descriptors").joinpath("builtin")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith((".yaml", ".yml")):
                origin = f"builtin/{entry.name}"
                lib.add(module_type_from_text(entry.read_text("utf-8"), origin), origin)
        _BUILTIN = lib
    return _BUILTIN.copy()


_PLUGIN_TYPES: dict[str, TypeLibrary] = {}
"""Module types of installed plug-in packages, by origin; filled by the composition root."""


def register_module_types(origin: str, folder: resources.abc.Traversable) -> list[str]:
    """Add the module types (``*.yaml``) in ``folder``, a plug-in package's data, by ``origin``.

    Why a registry: a plant names a type (``type: AcmeHeater``), not a file, and a driver
    package ships the types of the devices it speaks to. The composition root calls this for
    every ``modulecontrol.module_types`` entry point, after the transports are registered (the
    types' bindings name them). Returns the names added, none if ``origin`` is registered
    already (registering twice changes nothing); a problem in a file is a ``ConfigError``
    naming the file.
    """
    if origin in _PLUGIN_TYPES:
        return []
    lib = TypeLibrary()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            where = f"{origin}/{entry.name}"
            lib.add(module_type_from_text(entry.read_text("utf-8"), where), where)
    _PLUGIN_TYPES[origin] = lib
    return sorted(lib.types)


def unregister_module_types(origin: str) -> None:
    _PLUGIN_TYPES.pop(origin, None)


def installed_types() -> TypeLibrary:
    """The built-in module types and those of registered plug-in packages.

    A plug-in type named like a built-in (or like another plug-in's) is a ``ConfigError``
    naming both origins: which one a plant meant cannot be guessed.
    """
    lib = builtin_types()
    for plugin in _PLUGIN_TYPES.values():
        for name, mt in plugin.types.items():
            lib.add(mt, plugin.origins[name])
    return lib


def builtin_type_files() -> list[Path]:
    folder = Path(str(resources.files("modulecontrol.descriptors").joinpath("builtin")))
    return sorted(folder.glob("*.yaml"))


@dataclass
class PlantConfig:
    """A validated plant with the module types it uses (overrides applied per instance)."""

    plant: Plant
    file: str
    library: TypeLibrary
    instance_types: dict[str, ModuleType] = field(default_factory=dict)
    doc: YamlDoc | None = None
    """The plant document, so that later layers (the simulators' build) can locate what they
    refuse; ``None`` for a plant made in code."""
    calibrations: list[Calibration] = field(default_factory=list)
    """The calibrated overlays applied to ``instance_types``, in order: the plant file's
    ``calibrations:``, then any given on the command line (``optimize --calibration``)."""

    def calibration_of(self, tag: str, key: str) -> Calibration | None:
        """The overlay that set simulator key ``key`` of ``tag``, if one did."""
        return next((c for c in self.calibrations if key in c.sets(tag)), None)

    def locate(self, path: tuple[str | int, ...]) -> Location:
        """Where ``path`` (e.g. ``("modules", 3)``) stands in the plant file."""
        return self.doc.locate(path) if self.doc is not None else Location(self.file)

    def type_of(self, tag: str) -> ModuleType:
        return self.instance_types[self.plant.module(tag).tag]

    def instance(self, tag: str) -> ModuleInstance:
        return self.plant.module(tag)

    @property
    def base_dir(self) -> Path:
        return Path(self.file).parent

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p


def apply_overrides(mt: ModuleType, inst: ModuleInstance) -> ModuleType:
    """The instance's view of its type: assembly limits, safe values and properties replaced."""
    ov = inst.overrides
    if not ov.assemblies and not ov.properties and not ov.simulator and not ov.simulator_noise:
        return mt
    data = mt.model_dump(by_alias=True, exclude_none=True)
    for da in data.get("data_assemblies", []):
        change = ov.assemblies.get(da["name"])
        if change is not None:
            update = change.model_dump(exclude_none=True)
            if update.get("stale_after") == "off":  # the watchdog and its deadband go
                for key in ("stale_after", "deadband"):
                    update.pop(key, None)
                    da.pop(key, None)
            da.update(update)
    data.setdefault("properties", {}).update(ov.properties)
    for key, sub, given in (("parameters", "simulator", ov.simulator),
                            ("noise", "simulator_noise", ov.simulator_noise)):
        if given:
            if data.get("simulator") is None:
                raise ValueError(f"module type {mt.name} has no simulator; "
                                 f"'overrides.{sub}' needs one")
            if key == "parameters":
                merge_simulator_overrides(data["simulator"], given)
            else:
                data["simulator"].setdefault(key, {}).update(given)
    return ModuleType.model_validate(data)


def plant_from_doc(doc: YamlDoc, library: TypeLibrary | None = None) -> PlantConfig:
    """Validate a plant document: schema, extra type files, topology, per-instance overrides."""
    plant = _validate(Plant, doc)
    lib = (library or installed_types()).copy()
    problems: list[Problem] = []
    base = Path(doc.file).parent
    for i, rel in enumerate(plant.types):
        path = Path(rel) if Path(rel).is_absolute() else base / rel
        try:
            lib.add(load_module_type(path), str(path), doc.locate(("types", i)))
        except ConfigError as exc:
            problems.extend(exc.problems)
    problems.extend(_located(doc, plant.topology_problems(lib.types)))
    config = PlantConfig(plant, doc.file, lib, doc=doc)
    for i, inst in enumerate(plant.modules):
        if inst.type not in lib:
            continue
        try:
            config.instance_types[inst.tag] = apply_overrides(lib.types[inst.type], inst)
        except (ValidationError, ValueError) as exc:
            text = str(exc).splitlines()
            detail = text[-1].strip() if text else str(exc)
            if isinstance(exc, ValidationError):
                errs = exc.errors(include_url=False)
                detail = errs[0]["msg"].removeprefix("Value error, ") if errs else detail
            problems.append(
                Problem(
                    f"overrides of {inst.tag}: {detail}", doc.locate(("modules", i, "overrides"))
                )
            )
    if not problems:  # the order names feeds, which needs every instance's type
        problems.extend(_located(doc, shutdown_problems(config)))
    if not problems:  # an overlay is judged against the validated instances
        for i, rel in enumerate(plant.calibrations):
            try:
                config = calibrate(config, config.resolve(rel), doc.locate(("calibrations", i)))
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return config


def load_plant(path: str | Path, library: TypeLibrary | None = None) -> PlantConfig:
    return plant_from_doc(load_yaml(path), library)


Validator = Callable[[YamlDoc], object]
_EXTRA_KINDS: dict[str, Validator] = {}


def register_kind(kind: str, validator: Validator) -> None:
    """Let other layers (recipes, simulators) teach ``validate_file`` their document kinds.

    Called by the composition root (:func:`modulecontrol.bootstrap.configure`), never on
    import, so what ``validate_file`` accepts does not depend on which modules happen to be
    imported.
    """
    _EXTRA_KINDS[kind] = validator


def unregister_kind(kind: str) -> None:
    """Forget a document kind (the composition root undoing itself, tests)."""
    _EXTRA_KINDS.pop(kind, None)


def document_kinds() -> dict[str, Validator]:
    """The registered extra document kinds (beyond ModuleType and Plant), as a copy."""
    return dict(_EXTRA_KINDS)


def validate_file(path: str | Path) -> Any:
    """Load any modulecontrol YAML document by its ``kind`` and return the validated object."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError.single("expected a mapping with a 'kind' key", doc.locate(()))
    kind = doc.data.get("kind")
    if kind == "ModuleType":
        return module_type_from_doc(doc)
    if kind == "Plant":
        return plant_from_doc(doc)
    if kind == "TwinCalibration":  # on its own: its schema (a plant judges the rest)
        return read_calibration(path)
    if isinstance(kind, str) and kind in _EXTRA_KINDS:
        return _EXTRA_KINDS[kind](doc)
    known = ["ModuleType", "Plant", "TwinCalibration", *_EXTRA_KINDS]
    if kind is None:
        raise ConfigError.single(f"missing 'kind' (one of: {', '.join(known)})", doc.locate(()))
    raise ConfigError.single(
        f"unknown kind '{kind}'{did_you_mean(str(kind), known)}", doc.locate(("kind",))
    )


def dump_model(model: BaseModel) -> str:
    """YAML for a descriptor; loading it again gives an equal model."""
    return dump_yaml(model.model_dump(by_alias=True, exclude_defaults=True, mode="json"))
