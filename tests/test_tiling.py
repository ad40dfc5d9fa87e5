"""Batch sizing against the memory budget, on the CPU and on a GPU provider (a name only: no GPU here)."""

from __future__ import annotations

from eo_missing_qgis.core.card import card_from_dict
from eo_missing_qgis.core.providers import CPU, CUDA
from eo_missing_qgis.core.tiling import CPU_MAX_BATCH, GPU_MEMORY_MB, batch_size_for
from tests.tiny_models import card_dict

CARD = card_from_dict(card_dict(modalities=("S2",)))


def test_cpu_batch_fits_half_the_budget_at_the_measured_cost():
    batch = batch_size_for(CARD, 256, network_bytes_per_pixel=200_000)
    assert batch * 200_000 <= 128 * 2**20 < (batch + 1) * 200_000


def test_cpu_batch_stops_where_the_caches_end():
    assert batch_size_for(CARD, 4096, network_bytes_per_pixel=2_000) == CPU_MAX_BATCH


def test_gpu_batches_are_larger_and_fill_the_assumed_device_memory():
    cpu = batch_size_for(CARD, 256, network_bytes_per_pixel=20_000, provider=CPU)
    gpu = batch_size_for(CARD, 256, network_bytes_per_pixel=20_000, provider=CUDA)
    assert gpu > cpu
    assert gpu * 20_000 <= GPU_MEMORY_MB * 2**20 < (gpu + 1) * 20_000


def test_gpu_batch_is_never_below_the_cpu_batch():
    # 100 MB a pixel: 1 GB of device memory holds 10 pixels, a 8 GB budget's half 40: the CPU's batch stands.
    cost = 100 * 2**20
    cpu = batch_size_for(CARD, 8 * GPU_MEMORY_MB, network_bytes_per_pixel=cost)
    assert cpu == 40
    assert batch_size_for(CARD, 8 * GPU_MEMORY_MB, network_bytes_per_pixel=cost, provider=CUDA) == cpu


def test_a_given_batch_size_wins_on_any_provider():
    assert batch_size_for(CARD, 256, 777, 20_000, provider=CUDA) == 777
