"""torch.distributed for every command: the torchrun environment (``env``: process group,
ranks, devices, collectives, a local launcher) and distributed synthesis (``tiles``: the units
of work of one region shared among ranks, one file written by rank 0)."""
