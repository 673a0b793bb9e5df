"""The GPU models the fake NVML can simulate, with the figures the real cards report.

Names are what ``nvmlDeviceGetName`` returns; memory is what ``nvmlDeviceGetMemoryInfo`` reports
(MiB, as ``nvidia-smi`` prints it). MIG profiles follow ``nvidia-smi mig -lgip`` / ``-lgipp`` and
NVIDIA's MIG user guide: instance counts, memory, SMs, and the memory-slice placements
(``start`` values and ``size``) each profile may take.
"""

from __future__ import annotations

from dataclasses import dataclass

# NVML_GPU_INSTANCE_PROFILE_* indexes (the ``profile`` argument of nvmlDeviceGetGpuInstanceProfileInfo).
_P1, _P2, _P3, _P4, _P7 = 0x0, 0x1, 0x2, 0x3, 0x4
_P1_REV1, _P2_REV1, _P1_REV2 = 0x7, 0x8, 0x9


@dataclass(frozen=True)
class MigProfile:
    """One GPU-instance profile of a MIG-capable model (one row of ``nvidia-smi mig -lgip``)."""

    name: str  # "1g.10gb", "1g.10gb+me"
    profile: int  # NVML_GPU_INSTANCE_PROFILE_* index
    profile_id: int  # the id NVML reports for it on this model
    slices: int  # compute slices (the "1g" in "1g.10gb")
    instances: int  # how many of it fit on one GPU
    memory_mib: int
    sm_count: int
    size: int  # memory slices occupied (placement size)
    starts: tuple[int, ...]  # allowed placement starts


@dataclass(frozen=True)
class GpuModel:
    """A GPU model as NVML describes it."""

    key: str  # short name used in node descriptions: "A100-SXM4-80GB"
    nvml_name: str  # "NVIDIA A100-SXM4-80GB"
    memory_mib: int
    sm_count: int
    cuda_cores: int
    compute_capability: tuple[int, int]
    pci_device_id: int
    nvlinks: int  # NVLink links per GPU (0: none)
    nvswitch: bool  # SXM boards whose links go to NVSwitches (all-to-all fabric)
    power_limit_w: int
    idle_power_w: int
    max_sm_clock_mhz: int
    idle_sm_clock_mhz: int
    row_remapping: bool  # Ampere and later remap rows; older cards retire pages
    mig_profiles: tuple[MigProfile, ...] = ()
    mig_compute_slices: int = 0  # 7 on A100/H100, 4 on A30
    mig_memory_slices: int = 0  # placement slots: 8 on A100/H100, 4 on A30
    memory_clock_mhz: int = 0  # nvmlDeviceGetClockInfo(NVML_CLOCK_MEM), as nvidia-smi -q shows it
    hbm: bool = True  # HBM reports its own temperature (NVML_FI_DEV_MEMORY_TEMP); GDDR does not
    reserved_mib: int = 0  # nvmlMemory_v2_t.reserved: what the driver and firmware keep

    @property
    def mig_capable(self) -> bool:
        """Whether the model supports MIG."""
        return bool(self.mig_profiles)

    @property
    def pcie(self) -> bool:
        """Whether the card is a PCIe board (no NVLink by default)."""
        return self.nvlinks == 0

    def mig_profile(self, name: str) -> MigProfile:
        """The MIG profile called ``name``; ValueError naming the valid ones otherwise."""
        for p in self.mig_profiles:
            if p.name == name:
                return p
        if not self.mig_profiles:
            raise ValueError(f"{self.key} does not support MIG")
        valid = ", ".join(p.name for p in self.mig_profiles)
        raise ValueError(f"MIG profile {name!r} does not exist on {self.key}; valid profiles: {valid}")


_SEVEN = tuple(range(7))


def _ampere_hopper_profiles(gb: int, mem: dict[str, int], sms: dict[str, int]) -> tuple[MigProfile, ...]:
    """The seven-slice profile table shared by A100 and H100 (placements per the MIG user guide)."""
    small, half = gb // 8, gb // 4  # 1g.5gb/1g.10gb, then 1g.10gb/1g.20gb
    return (
        MigProfile(f"1g.{small}gb", _P1, 19, 1, 7, mem["1g"], sms["1g"], 1, _SEVEN),
        MigProfile(f"1g.{small}gb+me", _P1_REV1, 20, 1, 1, mem["1g"], sms["1g"], 1, _SEVEN),
        MigProfile(f"1g.{half}gb", _P1_REV2, 15, 1, 4, mem["2g"], sms["1gx2"], 2, (0, 2, 4, 6)),
        MigProfile(f"2g.{half}gb", _P2, 14, 2, 3, mem["2g"], sms["2g"], 2, (0, 2, 4)),
        MigProfile(f"3g.{gb // 2}gb", _P3, 9, 3, 2, mem["4g"], sms["3g"], 4, (0, 4)),
        MigProfile(f"4g.{gb // 2}gb", _P4, 5, 4, 1, mem["4g"], sms["4g"], 4, (0,)),
        MigProfile(f"7g.{gb}gb", _P7, 0, 7, 1, mem["7g"], sms["7g"], 8, (0,)),
    )


_A100_SMS = {"1g": 14, "1gx2": 14, "2g": 28, "3g": 42, "4g": 56, "7g": 98}

_MODELS = (
    GpuModel(
        "A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", 40960, 108, 6912, (8, 0), 0x20B010DE,
        nvlinks=12, nvswitch=True, power_limit_w=400, idle_power_w=55,
        max_sm_clock_mhz=1410, idle_sm_clock_mhz=210, row_remapping=True,
        memory_clock_mhz=1215, reserved_mib=262,
        mig_profiles=_ampere_hopper_profiles(
            40, {"1g": 4864, "2g": 9856, "4g": 19968, "7g": 40192}, _A100_SMS),
        mig_compute_slices=7, mig_memory_slices=8,
    ),
    GpuModel(
        "A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", 81920, 108, 6912, (8, 0), 0x20B210DE,
        nvlinks=12, nvswitch=True, power_limit_w=400, idle_power_w=60,
        max_sm_clock_mhz=1410, idle_sm_clock_mhz=210, row_remapping=True,
        memory_clock_mhz=1593, reserved_mib=524,
        mig_profiles=_ampere_hopper_profiles(
            80, {"1g": 9728, "2g": 19968, "4g": 40192, "7g": 81152}, _A100_SMS),
        mig_compute_slices=7, mig_memory_slices=8,
    ),
    GpuModel(
        "H100-SXM5-80GB", "NVIDIA H100 80GB HBM3", 81559, 132, 16896, (9, 0), 0x233010DE,
        nvlinks=18, nvswitch=True, power_limit_w=700, idle_power_w=70,
        max_sm_clock_mhz=1980, idle_sm_clock_mhz=345, row_remapping=True,
        memory_clock_mhz=2619, reserved_mib=579,
        mig_profiles=_ampere_hopper_profiles(
            80, {"1g": 9984, "2g": 20096, "4g": 40448, "7g": 81152},
            {"1g": 16, "1gx2": 26, "2g": 32, "3g": 60, "4g": 64, "7g": 132}),
        mig_compute_slices=7, mig_memory_slices=8,
    ),
    GpuModel(
        "A30", "NVIDIA A30", 24576, 56, 3584, (8, 0), 0x20B710DE,
        nvlinks=0, nvswitch=False, power_limit_w=165, idle_power_w=30,
        max_sm_clock_mhz=1440, idle_sm_clock_mhz=210, row_remapping=True,
        memory_clock_mhz=1215, reserved_mib=246,
        mig_profiles=(
            MigProfile("1g.6gb", _P1, 14, 1, 4, 5952, 14, 1, (0, 1, 2, 3)),
            MigProfile("1g.6gb+me", _P1_REV1, 21, 1, 1, 5952, 14, 1, (0, 1, 2, 3)),
            MigProfile("2g.12gb", _P2, 5, 2, 2, 12032, 28, 2, (0, 2)),
            MigProfile("2g.12gb+me", _P2_REV1, 6, 2, 1, 12032, 28, 2, (0, 2)),
            MigProfile("4g.24gb", _P4, 0, 4, 1, 24192, 56, 4, (0,)),
        ),
        mig_compute_slices=4, mig_memory_slices=4,
    ),
    GpuModel(
        "T4", "Tesla T4", 15360, 40, 2560, (7, 5), 0x1EB810DE,
        nvlinks=0, nvswitch=False, power_limit_w=70, idle_power_w=10,
        max_sm_clock_mhz=1590, idle_sm_clock_mhz=300, row_remapping=False,
        memory_clock_mhz=5000, hbm=False, reserved_mib=246,
    ),
    GpuModel(
        "V100-SXM2-16GB", "Tesla V100-SXM2-16GB", 16160, 80, 5120, (7, 0), 0x1DB110DE,
        nvlinks=6, nvswitch=False, power_limit_w=300, idle_power_w=40,
        max_sm_clock_mhz=1530, idle_sm_clock_mhz=135, row_remapping=False,
        memory_clock_mhz=877, reserved_mib=0,
    ),
    GpuModel(
        "V100-SXM2-32GB", "Tesla V100-SXM2-32GB", 32510, 80, 5120, (7, 0), 0x1DB510DE,
        nvlinks=6, nvswitch=False, power_limit_w=300, idle_power_w=40,
        max_sm_clock_mhz=1530, idle_sm_clock_mhz=135, row_remapping=False,
        memory_clock_mhz=877, reserved_mib=0,
    ),
)

CATALOG: dict[str, GpuModel] = {m.key: m for m in _MODELS}


def find_model(name: str) -> GpuModel:
    """The catalog model for a short key (``A100-SXM4-80GB``) or an NVML name (``Tesla T4``).

    Matching ignores case. ValueError lists the known models otherwise.
    """
    wanted = name.strip().lower()
    for m in _MODELS:
        if wanted in (m.key.lower(), m.nvml_name.lower()):
            return m
    raise ValueError(f"unknown GPU model {name!r}; known models: {', '.join(CATALOG)}")
