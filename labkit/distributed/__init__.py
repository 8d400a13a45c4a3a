"""Distributed training on one machine: process groups, DDP, a two-stage pipeline, sharded parameters.

One idea per module: `launch` (start processes that form a group, clean all of them up), `ddp` (data parallel
training and its proof of synchronization), `costs` (what the synchronization costs), `pipeline` (model
parallel, GPipe micro-batches), `fsdp` (parameter sharding). Nothing runs at import. Taught in
08_distributed_training.
"""
