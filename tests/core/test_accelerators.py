"""The vendor table, vendor inference, sharing rules and the device contract."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosu.core import accelerators
from mosu.core.accelerators import (
    CONTRACTS,
    DEVICE_SELECTION_VARIABLES,
    KNOWN_MODELS,
    MOSU_ACCELERATOR_VENDOR,
    MOSU_DEVICES,
    Vendor,
    check_fraction,
    describe,
    model_from_product,
    parse_vendor,
    supports_sharing,
    vendor_of,
    visibility_env,
)
from mosu.core.errors import InvalidInput

VENDOR_VARIABLES = {v: set(c.variables) for v, c in CONTRACTS.items()}


def test_public_surface_lists_every_public_name_once():
    public = {
        name
        for name, value in vars(accelerators).items()
        if not name.startswith("_")
        and not isinstance(value, type(accelerators))
        and getattr(value, "__module__", accelerators.__name__) == accelerators.__name__
    }
    assert len(accelerators.__all__) == len(set(accelerators.__all__))
    assert set(accelerators.__all__) == public


# ----------------------------------------------------------------- the table


@pytest.mark.parametrize(
    ("model", "want_vendor", "want_memory_gib"),
    [
        ("H800", Vendor.NVIDIA, 79.6),
        ("H20", Vendor.NVIDIA, 95.6),
        ("A100", Vendor.NVIDIA, 80),
        ("Ascend910B", Vendor.HUAWEI, 64),
        ("Ascend910B4", Vendor.HUAWEI, 32),
        ("Ascend910C", Vendor.HUAWEI, 64),
        ("Ascend310P", Vendor.HUAWEI, 24),
        ("MI250X", Vendor.AMD, 64),
        ("MI300X", Vendor.AMD, 192),
        ("MI325X", Vendor.AMD, 256),
        ("MLU370-X8", Vendor.CAMBRICON, 24),
        ("MLU590", Vendor.CAMBRICON, 80),
    ],
)
def test_known_models_carry_vendor_and_memory_per_device(model, want_vendor, want_memory_gib):
    entry = KNOWN_MODELS[model]
    assert entry.vendor is want_vendor
    assert entry.memory_mib / 1024 == pytest.approx(want_memory_gib, abs=0.1)


def test_every_vendor_has_models_and_names_are_unique_ignoring_case():
    assert {m.vendor for m in KNOWN_MODELS.values()} == set(Vendor)
    folded = [name.casefold() for name in KNOWN_MODELS]
    assert len(folded) == len(set(folded))


def test_describe_ignores_case_and_knows_nothing_of_unknown_models():
    assert describe("ascend910b3") is KNOWN_MODELS["Ascend910B3"]
    assert describe("G2") is None


# ----------------------------------------------------------------- vendors


@pytest.mark.parametrize(
    ("model", "declared", "want"),
    [
        ("H800", None, Vendor.NVIDIA),
        ("Ascend910B", None, Vendor.HUAWEI),
        ("mi300x", None, Vendor.AMD),
        ("MLU370-X4", None, Vendor.CAMBRICON),
        ("Ascend310B4", None, Vendor.HUAWEI),  # unknown model, known family
        ("MI308X-HF", None, Vendor.AMD),
        ("Radeon-RX-7900-XT", None, Vendor.AMD),
        ("MLU580", None, Vendor.CAMBRICON),
        ("G2", None, Vendor.NVIDIA),  # a trace's type: every pre-vendor type is NVIDIA
        ("gpu", None, Vendor.NVIDIA),
        ("Ascend910B", "huawei", Vendor.HUAWEI),
        ("Ascend910B", " Huawei ", Vendor.HUAWEI),
        ("Atlas-X", "huawei", Vendor.HUAWEI),  # an unknown model takes the declared vendor
        ("H800", Vendor.NVIDIA, Vendor.NVIDIA),
    ],
)
def test_vendor_is_declared_else_from_the_table_else_the_family_else_nvidia(model, declared, want):
    assert vendor_of(model, declared) is want


def test_an_unknown_vendor_name_is_a_clear_error_naming_the_field():
    with pytest.raises(InvalidInput) as caught:
        vendor_of("Ascend910B", "intel", field="--gpu-vendor")
    assert caught.value.field == "--gpu-vendor"
    assert str(caught.value) == (
        "--gpu-vendor: unknown vendor 'intel'; known vendors: nvidia, huawei, amd, cambricon"
    )
    assert "\n" not in str(caught.value)


def test_a_declared_vendor_that_contradicts_the_table_is_refused():
    with pytest.raises(InvalidInput, match="H800 is made by nvidia, not huawei") as caught:
        vendor_of("H800", "huawei")
    assert caught.value.field == "gpu_vendor"


def test_parse_vendor_accepts_every_vendor_by_value():
    assert [parse_vendor(v.value.upper()) for v in Vendor] == list(Vendor)


# ----------------------------------------------------------------- sharing


@pytest.mark.parametrize(
    ("model", "vendor", "want"),
    [
        ("H800", None, True),
        ("A100", None, True),
        ("G2", None, True),  # unknown: NVIDIA's default
        ("Ascend910B", None, False),
        ("MI300X", None, False),
        ("MLU370-X8", None, False),
        ("Atlas-X", "huawei", False),
        ("Instinct-Z", None, False),
    ],
)
def test_only_nvidia_shares_devices_by_default(model, vendor, want):
    assert supports_sharing(model, vendor) is want


def test_a_fraction_on_a_vendor_without_sharing_is_a_one_line_error_naming_gpus():
    check_fraction("H800", 0.5)  # NVIDIA: fine
    check_fraction("Ascend910B", 2)  # whole devices: fine on any vendor
    check_fraction("Ascend910B", 1.0)
    with pytest.raises(InvalidInput) as caught:
        check_fraction("Ascend910B", 0.5)
    assert caught.value.field == "gpus"
    assert str(caught.value) == (
        "gpus: 0.5 of a device needs a GPU type that allows sharing; Ascend910B (huawei) "
        "is scheduled in whole devices only, so ask for a whole number"
    )


def test_a_model_may_override_its_vendors_sharing_default():
    shared_npu = accelerators.AcceleratorModel("x", Vendor.HUAWEI, 1, shares_devices=True)
    whole_gpu = accelerators.AcceleratorModel("y", Vendor.NVIDIA, 1, shares_devices=False)
    assert shared_npu.shareable and not whole_gpu.shareable


# ----------------------------------------------------------------- product names


@pytest.mark.parametrize(
    ("product", "want"),
    [
        ("NVIDIA A100-SXM4-80GB", "A100"),
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA L40S", "L40S"),
        ("Tesla T4", "T4"),
        ("NVIDIA RTX A1000", None),  # not an A100
        ("NVIDIA GH200 480GB", None),  # not an H200
        ("NVIDIA GeForce RTX 4090", None),
        ("AMD INSTINCT MI250 (MCM) OAM AC MBA", "MI250"),
        ("AMD Instinct MI250X/MI250", "MI250X"),
        ("MI300X-O", "MI300X"),
        ("Aqua Vanjaram [Instinct MI300A]", "MI300A"),
        ("AMD-Instinct-MI300X-OAM", "MI300X"),  # Ray's accelerator_type
        ("AMD Instinct MI350X", "MI350X"),
        ("Ascend910B4", "Ascend910B4"),  # Ray's NPU accelerator_type
        ("MLU370-X8", "MLU370-X8"),
        ("MLU370-X2", "MLU370"),
        ("MLU590-H8", "MLU590-H8"),
        ("", None),
    ],
)
def test_model_from_product_reads_tool_and_ray_names(product, want):
    assert model_from_product(product) == want


# ----------------------------------------------------------------- the contract


def _vendors_whose_variables_appear(env: dict[str, str]) -> set[Vendor]:
    return {v for v, names in VENDOR_VARIABLES.items() if names & env.keys()}


@settings(max_examples=300, deadline=None)
@given(
    vendor=st.sampled_from(list(Vendor)),
    indices=st.lists(st.integers(min_value=0, max_value=127), max_size=16, unique=True),
)
def test_exactly_one_vendors_variables_appear_with_the_indices(vendor, indices):
    env = visibility_env(vendor, indices)
    ids = ",".join(map(str, indices))
    assert _vendors_whose_variables_appear(env) == {vendor}
    for name in CONTRACTS[vendor].variables:
        assert env[name] == ids
    assert env[MOSU_DEVICES] == ids
    assert env[MOSU_ACCELERATOR_VENDOR] == vendor.value
    assert set(env) == set(CONTRACTS[vendor].variables) | {MOSU_DEVICES, MOSU_ACCELERATOR_VENDOR}
    assert set(env) <= DEVICE_SELECTION_VARIABLES


@pytest.mark.parametrize(
    ("vendor", "want"),
    [
        (Vendor.NVIDIA, {"CUDA_VISIBLE_DEVICES": "2,3"}),
        (Vendor.HUAWEI, {"ASCEND_RT_VISIBLE_DEVICES": "2,3"}),
        (Vendor.AMD, {"HIP_VISIBLE_DEVICES": "2,3"}),
        (Vendor.CAMBRICON, {"MLU_VISIBLE_DEVICES": "2,3"}),
    ],
)
def test_the_contract_table(vendor, want):
    env = visibility_env(vendor, [2, 3])
    assert env == {**want, "MOSU_DEVICES": "2,3", "MOSU_ACCELERATOR_VENDOR": vendor.value}


def test_amd_never_gets_cuda_or_rocr_variables():
    # HIP reads CUDA_VISIBLE_DEVICES too, and ROCR_VISIBLE_DEVICES would filter
    # before HIP indexes: either would pick other devices than the assignment.
    env = visibility_env(Vendor.AMD, [5])
    assert "CUDA_VISIBLE_DEVICES" not in env
    assert "ROCR_VISIBLE_DEVICES" not in env
    assert "ROCR_VISIBLE_DEVICES" in DEVICE_SELECTION_VARIABLES


@pytest.mark.parametrize("vendor", list(Vendor))
def test_a_cpu_only_replica_hides_every_device_of_its_vendor(vendor):
    env = visibility_env(vendor, [])
    for name in CONTRACTS[vendor].variables:
        assert env[name] == ""
    assert env[MOSU_DEVICES] == ""
    assert env[MOSU_ACCELERATOR_VENDOR] == vendor.value


def test_device_order_is_kept_rank_by_rank():
    assert visibility_env(Vendor.HUAWEI, [6, 1, 4])["ASCEND_RT_VISIBLE_DEVICES"] == "6,1,4"


@pytest.mark.parametrize("bad", [[-1], [1, 1], [True], ["0"], [1.0]])
def test_indices_must_be_distinct_whole_numbers(bad):
    with pytest.raises(ValueError, match="device index"):
        visibility_env(Vendor.NVIDIA, bad)


def test_ray_resources_match_rays_accelerator_managers():
    assert CONTRACTS[Vendor.NVIDIA].ray_resource == "GPU"
    assert CONTRACTS[Vendor.AMD].ray_resource == "GPU"
    assert CONTRACTS[Vendor.HUAWEI].ray_resource == "NPU"
    assert CONTRACTS[Vendor.CAMBRICON].ray_resource is None
