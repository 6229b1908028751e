"""The machine the appliance runs on: CPU, memory, disk, NVIDIA GPUs (NVML), energy and cost."""
