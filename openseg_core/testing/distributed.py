"""Run a function in several CPU processes joined by gloo, as a distributed training does.

For tests of collectives and of losses over the global batch::

    from openseg_core.testing.distributed import free_port, run_in_processes
    results = run_in_processes(check, world_size=2)   # check(rank, world_size, *args)

``check`` must be importable (a module-level function): the processes are spawned.
"""
import os
import pickle
import socket
from typing import Callable, List

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port nothing listens on now (for a rendezvous; tests may run side by side)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple, queue) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world_size)
    try:
        # Plain pickle: tensors travel as bytes, not as shared memory that dies with the
        # process.
        queue.put((rank, pickle.dumps(fn(rank, world_size, *args))))
        # Neither process tears its group down while the other may still be talking to it:
        # gloo aborts a process whose peer went away mid-flight ("terminate called without an
        # active exception", seen once in a full suite run).
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # The result is in the pipe: leave without the interpreter's teardown, where gloo's and
    # FSDP's background threads have aborted a finished process now and then (SIGABRT after
    # its result was sent, about one run in ten).
    os._exit(0)


def run_in_processes(fn: Callable, world_size: int = 2, args: tuple = ()) -> List:
    """``[fn(rank, world_size, *args) for each rank]``, each in its own process of one
    gloo process group; an exception in any process fails the call."""
    context = mp.get_context('spawn')
    queue = context.SimpleQueue()
    processes = mp.start_processes(_worker, args=(world_size, free_port(), fn, args, queue),
                                   nprocs=world_size, join=False, start_method='spawn')
    # Results are read while the processes run: a result larger than the pipe's buffer
    # (64 kB) blocks its process in put() until it is read, so joining first would wait
    # forever. A failed process puts nothing: join() raises its error instead.
    results = {}
    while len(results) < world_size:
        if not queue.empty():
            rank, data = queue.get()
            results[rank] = data
        elif processes.join(timeout=0.1):
            break
    while not processes.join():
        pass
    while not queue.empty():
        rank, data = queue.get()
        results[rank] = data
    return [pickle.loads(results[rank]) for rank in range(world_size)]
