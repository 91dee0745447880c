"""Accelerator vendors, the models mosu knows, and each vendor's device contract.

Nomenclature: a *vendor* makes the accelerator and its runtime (``nvidia``,
``huawei`` for Ascend NPUs, ``amd``, ``cambricon``); a *model* is what mosu calls
a GPU type everywhere else (``H800``, ``Ascend910B3``, ``MI300X``, ``MLU370-X8``);
a *device* is one schedulable accelerator as its runtime counts it (an Ascend 910C
die, one MI250X graphics die, one MLU370-X8 chip). Quotas, the engine and the
simulator only ever see the model name; the vendor decides how a replica is shown
its devices (the *device contract*) and whether one device may be shared.

The contract is a promise to cooperating runtimes, not a wall: a process can
rewrite its own environment before it starts its runtime (ROCm's and NVIDIA's
documentation both say so). Keeping hostile tenants off devices that are not
theirs is the job of device-file isolation, not of these variables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from mosu.core.errors import InvalidInput

__all__ = [
    "CONTRACTS",
    "DEVICE_SELECTION_VARIABLES",
    "KNOWN_MODELS",
    "MOSU_ACCELERATOR_VENDOR",
    "MOSU_DEVICES",
    "VENDOR_SHARES_DEVICES",
    "AcceleratorModel",
    "DeviceContract",
    "Vendor",
    "check_fraction",
    "describe",
    "model_from_product",
    "parse_vendor",
    "supports_sharing",
    "vendor_of",
    "visibility_env",
]


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    HUAWEI = "huawei"
    AMD = "amd"
    CAMBRICON = "cambricon"


# Only NVIDIA devices are shared by default. mosu's fractional share runs several
# replicas' processes on one device at once and relies on the runtime accepting
# that (CUDA time-slices contexts; MPS adds limits). Ascend, AMD and Cambricon
# split a device only by static partitioning that the operator sets up (Ascend
# vNPU templates, AMD compute partitions, Cambricon SR-IOV virtual MLUs); each
# partition then shows up as a whole device of its own, which mosu schedules as
# whole devices of a model declared for it. A model may override its vendor.
VENDOR_SHARES_DEVICES: Mapping[Vendor, bool] = MappingProxyType(
    {Vendor.NVIDIA: True, Vendor.HUAWEI: False, Vendor.AMD: False, Vendor.CAMBRICON: False}
)


@dataclass(frozen=True, slots=True)
class AcceleratorModel:
    name: str
    vendor: Vendor
    memory_mib: int
    """Memory of one device, as the vendor's tool reports it where known."""
    shares_devices: bool | None = None
    """None: the vendor's default (``VENDOR_SHARES_DEVICES``)."""

    @property
    def shareable(self) -> bool:
        if self.shares_devices is None:
            return VENDOR_SHARES_DEVICES[self.vendor]
        return self.shares_devices


def _models(vendor: Vendor, rows: Iterable[tuple[str, int]]) -> list[AcceleratorModel]:
    return [AcceleratorModel(name, vendor, mib) for name, mib in rows]


_GIB = 1024

# Memory is per *device*: an MI250X is two devices of 64 GiB, an MLU370-X8 two
# chips of 24 GiB, an Ascend 910C two dies of 64 GiB. NVIDIA figures are what
# nvidia-smi prints for the usual SKU (A100 and V100: the 80 and 32 GB ones);
# declare gpu_memory for another SKU.
_TABLE: list[AcceleratorModel] = [
    *_models(
        Vendor.NVIDIA,
        [
            ("B200", 183359),
            ("H200", 143771),
            ("H100", 81559),
            ("H800", 81559),
            ("H20", 97871),
            ("A100", 81920),
            ("A800", 81920),
            ("A40", 46068),
            ("A30", 24576),
            ("A10", 23028),
            ("L40S", 46068),
            ("L40", 46068),
            ("L20", 46068),
            ("L4", 23034),
            ("V100", 32768),
            ("T4", 15360),
        ],
    ),
    *_models(
        Vendor.HUAWEI,
        [
            ("Ascend910A", 32 * _GIB),
            ("Ascend910B", 64 * _GIB),
            ("Ascend910B1", 64 * _GIB),
            ("Ascend910B2", 64 * _GIB),
            ("Ascend910B3", 64 * _GIB),
            ("Ascend910B4", 32 * _GIB),
            ("Ascend910B2C", 64 * _GIB),
            ("Ascend910C", 64 * _GIB),
            ("Ascend310P", 24 * _GIB),
            ("Ascend310P3", 24 * _GIB),
        ],
    ),
    *_models(
        Vendor.AMD,
        [
            ("MI100", 32 * _GIB),
            ("MI210", 64 * _GIB),
            ("MI250", 64 * _GIB),
            ("MI250X", 64 * _GIB),
            ("MI300A", 128 * _GIB),
            ("MI300X", 192 * _GIB),
            ("MI308X", 192 * _GIB),
            ("MI325X", 256 * _GIB),
            ("MI350X", 288 * _GIB),
            ("MI355X", 288 * _GIB),
        ],
    ),
    *_models(
        Vendor.CAMBRICON,
        [
            ("MLU290-M5", 32 * _GIB),
            ("MLU370", 24 * _GIB),
            ("MLU370-S4", 24 * _GIB),
            ("MLU370-X4", 24 * _GIB),
            ("MLU370-X8", 24 * _GIB),
            ("MLU590", 80 * _GIB),
            ("MLU590-H8", 80 * _GIB),
        ],
    ),
]

KNOWN_MODELS: Mapping[str, AcceleratorModel] = MappingProxyType({m.name: m for m in _TABLE})
"""Every model mosu knows, by its canonical name."""

_BY_FOLDED_NAME = {m.name.casefold(): m for m in _TABLE}
_LONGEST_FIRST = sorted(_TABLE, key=lambda m: (-len(m.name), m.name))

# Families whose vendor is plain from the name even when the exact model is new
# (an Ascend 310B, an MI308X-HF, an MLU580): checked only for unknown models.
_FAMILIES: tuple[tuple[re.Pattern[str], Vendor], ...] = (
    (re.compile(r"^ascend", re.IGNORECASE), Vendor.HUAWEI),
    (re.compile(r"^(mi\d{2,3}|instinct|radeon)", re.IGNORECASE), Vendor.AMD),
    (re.compile(r"^mlu\d", re.IGNORECASE), Vendor.CAMBRICON),
)


def parse_vendor(name: str, *, field: str = "gpu_vendor") -> Vendor:
    """``"Huawei"`` → ``Vendor.HUAWEI``; an unknown name is an ``InvalidInput`` naming ``field``."""
    try:
        return Vendor(name.strip().lower())
    except ValueError:
        known = ", ".join(v.value for v in Vendor)
        raise InvalidInput(
            f"unknown vendor {name!r}; known vendors: {known}", field=field
        ) from None


def describe(model: str) -> AcceleratorModel | None:
    """The table entry of ``model`` (case-insensitive), or None for a model mosu does not know."""
    return _BY_FOLDED_NAME.get(model.strip().casefold())


def vendor_of(
    model: str, declared: str | Vendor | None = None, *, field: str = "gpu_vendor"
) -> Vendor:
    """The vendor of ``model``: the one declared, else the table's, else its family's, else NVIDIA.

    NVIDIA is the fallback because every GPU type mosu ran before vendors existed
    (``A100``, ``T4``, a trace's ``G2``) is one. A declared vendor that contradicts
    the table is refused rather than trusted: it would give the replica the wrong
    device contract.
    """
    known = describe(model)
    if declared is not None:
        vendor = declared if isinstance(declared, Vendor) else parse_vendor(declared, field=field)
        if known is not None and known.vendor is not vendor:
            raise InvalidInput(
                f"{known.name} is made by {known.vendor.value}, not {vendor.value}; "
                "drop the vendor or name the right GPU type",
                field=field,
            )
        return vendor
    if known is not None:
        return known.vendor
    for pattern, vendor in _FAMILIES:
        if pattern.match(model.strip()):
            return vendor
    return Vendor.NVIDIA


def supports_sharing(model: str, vendor: str | Vendor | None = None) -> bool:
    """Whether replicas may hold fractions of one device of ``model``."""
    known = describe(model)
    if known is not None:
        return known.shareable
    return VENDOR_SHARES_DEVICES[vendor_of(model, vendor)]


def check_fraction(
    model: str, gpus: float, vendor: str | Vendor | None = None, *, field: str = "gpus"
) -> None:
    """Refuse a fractional request (``gpus`` not whole) for a model whose devices are not shared."""
    if float(gpus).is_integer() or supports_sharing(model, vendor):
        return
    who = vendor_of(model, vendor)
    raise InvalidInput(
        f"{gpus:g} of a device needs a GPU type that allows sharing; {model} ({who.value}) "
        "is scheduled in whole devices only, so ask for a whole number",
        field=field,
    )


def model_from_product(product: str) -> str | None:
    """The known model named in a product string, or None.

    Reads what the tools and Ray print: ``NVIDIA A100-SXM4-80GB`` → ``A100``,
    ``AMD INSTINCT MI250 (MCM) OAM AC MBA`` → ``MI250``, ``MI300X-O`` → ``MI300X``,
    ``AMD-Instinct-MI300X-OAM`` → ``MI300X``, ``MLU370-X8`` → ``MLU370-X8``. A model
    matches a word (or a dash-separated tail of one) that it starts, when the next
    character is not a digit, so ``H20`` is not read out of ``H200`` nor ``A100``
    out of ``A1000``.
    """
    for word in re.split(r"[\s,/()\[\]_:;]+", product):
        parts = word.split("-")
        for start in range(len(parts)):
            candidate = "-".join(parts[start:]).casefold()
            for model in _LONGEST_FIRST:
                name = model.name.casefold()
                if candidate.startswith(name):
                    rest = candidate[len(name) :]
                    if not rest or not rest[0].isdigit():
                        return model.name
    return None


# ----------------------------------------------------------------- the contract

MOSU_DEVICES = "MOSU_DEVICES"
"""Vendor-neutral: the replica's device indices, comma-separated (empty for none)."""
MOSU_ACCELERATOR_VENDOR = "MOSU_ACCELERATOR_VENDOR"
"""Vendor-neutral: whose devices ``MOSU_DEVICES`` names."""


@dataclass(frozen=True, slots=True)
class DeviceContract:
    vendor: Vendor
    variables: tuple[str, ...]
    """The visibility variables this vendor's runtime reads, set to the replica's indices."""
    ray_resource: str | None
    """The Ray resource Ray's own accelerator manager counts these devices under."""


# AMD gets HIP_VISIBLE_DEVICES alone. ROCm applies ROCR_VISIBLE_DEVICES first and
# HIP then indexes the devices that survive, so setting both to the same indices
# selects the wrong devices for any assignment but 0..n-1; Ray sets HIP only and
# refuses ROCR without HIP, and verl refuses the two together. HIP also reads
# CUDA_VISIBLE_DEVICES, which is one more reason never to set another vendor's
# variable. Cambricon has no Ray accelerator manager.
CONTRACTS: Mapping[Vendor, DeviceContract] = MappingProxyType(
    {
        Vendor.NVIDIA: DeviceContract(Vendor.NVIDIA, ("CUDA_VISIBLE_DEVICES",), "GPU"),
        Vendor.HUAWEI: DeviceContract(Vendor.HUAWEI, ("ASCEND_RT_VISIBLE_DEVICES",), "NPU"),
        Vendor.AMD: DeviceContract(Vendor.AMD, ("HIP_VISIBLE_DEVICES",), "GPU"),
        Vendor.CAMBRICON: DeviceContract(Vendor.CAMBRICON, ("MLU_VISIBLE_DEVICES",), None),
    }
)

DEVICE_SELECTION_VARIABLES: frozenset[str] = frozenset(
    {
        *(var for contract in CONTRACTS.values() for var in contract.variables),
        "NVIDIA_VISIBLE_DEVICES",
        "ASCEND_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "GPU_DEVICE_ORDINAL",
        MOSU_DEVICES,
        MOSU_ACCELERATOR_VENDOR,
    }
)
"""Every variable that picks devices for some runtime or container layer: a
replica's environment must inherit none of them, only what ``visibility_env`` sets."""


def visibility_env(vendor: Vendor, indices: Sequence[int]) -> dict[str, str]:
    """The environment that shows a replica exactly ``indices`` of ``vendor``'s devices.

    Exactly the vendor's own variables are set, never another vendor's, plus the
    vendor-neutral ``MOSU_DEVICES`` and ``MOSU_ACCELERATOR_VENDOR``. Order is kept:
    the replica's device 0 is ``indices[0]``. No indices (a CPU-only replica) sets
    the vendor's variables to the empty string, which hides every device from the
    runtime, as Ray does for a task that holds none.
    """
    vendor = Vendor(vendor)
    seen: set[int] = set()
    for index in indices:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"device index {index!r} is not a whole number 0 or more")
        if index in seen:
            raise ValueError(f"device index {index} is listed twice")
        seen.add(index)
    ids = ",".join(str(i) for i in indices)
    env = dict.fromkeys(CONTRACTS[vendor].variables, ids)
    env[MOSU_DEVICES] = ids
    env[MOSU_ACCELERATOR_VENDOR] = vendor.value
    return env
