"""One node's share of a run trained with DDP: torchrun's elastic agent, set from the environment, and every way it
ends said in one line. experiments/launch.sh calls it for GPUS > 1 and experiments/multinode.sh for several machines:

    python -m src.engine.launch train.py|pseudo_train.py [the entry's arguments]

Environment (each node the same, but NODE_RANK): NNODES (1), GPUS (processes on this node, 1), MASTER_ADDR and
MASTER_PORT (where the nodes meet: the c10d rendezvous; one node hosts it, default localhost:29500), NODE_RANK (unset:
c10d orders the nodes itself), MAX_RESTARTS (0: how often the group restarts after a worker dies; the restarted
processes resume from each fold's last.pt by themselves), JOIN_TIMEOUT (60: seconds a node waits for the others),
RDZV_ID (the run's name: the nodes of one run meet under it).

A node refuses to start a run that a live trainer holds (a fold's lock in the shared log_dir), before it meets the
others: a second launch would otherwise join the first one's rendezvous and restart its group.
"""
from __future__ import annotations

import errno
import logging
import os
import socket
import sys

from src.config.parsing import parse
from src.config.schema import PseudoConfig, TrainConfig
from src.errors import (ConfigError, GroupLost, Interrupted, MaskclsError, RunBusy, fail_cleanly, first_line,
                        interruptible)
from src.run.rundir import RunDir

ENTRIES = {"train.py": TrainConfig, "pseudo_train.py": PseudoConfig}
LAUNCHED = "MASKCLS_LAUNCHER"  # set for the workers: their launcher says how the run ended
RESUME = "the run keeps each fold's last.pt: launch every node again with --resume"


def number(name: str, default: int, least: int) -> int:
    text = os.environ.get(name, str(default))
    if not text.isdigit() or int(text) < least:
        raise ConfigError(f"{name} must be a whole number of at least {least}, got {text!r}")
    return int(text)


def torchrun_args(run: str, hosts: bool | None = None) -> tuple[list[str], str, int]:
    """(torchrun's arguments for this node, the rendezvous endpoint, the nodes expected) from the environment; `hosts`:
    whether this node hosts the rendezvous (None: it does where it can)."""
    nodes, gpus = number("NNODES", 1, 1), number("GPUS", 1, 1)
    host, port = os.environ.get("MASTER_ADDR") or "localhost", number("MASTER_PORT", 29500, 1)
    endpoint = f"{host}:{port}"
    # torch guesses which node hosts the rendezvous from the machine's host name, and misses an address of a second
    # network card: then no node hosts it and every node waits. The node that has MASTER_ADDR and finds its port free
    # hosts it; every other node (a second launcher on the same machine too) reaches it at MASTER_ADDR.
    hosts = can_listen(host, port) if hosts is None else hosts
    args = ["--nnodes", str(nodes), "--nproc_per_node", str(gpus), "--max_restarts", str(number("MAX_RESTARTS", 0, 0)),
            "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", os.environ.get("RDZV_ID") or run,
            "--rdzv_conf", f"join_timeout={number('JOIN_TIMEOUT', 60, 1)},is_host={str(hosts).lower()}"]
    if os.environ.get("NODE_RANK"):
        args += ["--node_rank", str(number("NODE_RANK", 0, 0))]
    return args, endpoint, nodes


def can_listen(host: str, port: int) -> bool:
    """Whether `host` names an address of this machine and `port` is free on every address it names (this node can
    host the rendezvous; localhost names two, and a store listening on one holds the port)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    local = False
    for family, _, _, _, address in infos:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(address)
                local = True
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return False
    return local


def refuse_busy(cfg: TrainConfig):
    """A run whose fold a live trainer holds is refused by name, as a second train.py is."""
    run = RunDir(cfg.log_dir, cfg.name)
    busy = run.training_folds(cfg.n_folds)
    if busy:
        raise RunBusy(f"run {run.name}: fold {busy[0]} is being trained by a live process ({run.fold_lock_file(busy[0])}"
                      f"); wait for it or stop it")


def ended(error: Exception, endpoint: str, nodes: int, timeout: int) -> MaskclsError | None:
    """The one line of how the node's agent ended, or None where the workers said it themselves."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousClosedError, RendezvousTimeoutError

    resume = RESUME
    if isinstance(error, RendezvousTimeoutError):
        missing = "1 node" if nodes == 2 else f"1 to {nodes - 1} nodes"
        return ConfigError(f"the nodes did not meet at {endpoint} within JOIN_TIMEOUT={timeout} s: NNODES={nodes}, "
                           f"{missing} missing; start every node with the same NNODES, MASTER_ADDR, MASTER_PORT and "
                           f"NAME, and check that {endpoint} reaches this machine; nothing was trained")
    if isinstance(error, RendezvousClosedError):
        return MaskclsError(f"the rendezvous at {endpoint} was closed: another node's group failed; {resume}")
    if isinstance(error, SignalException):
        return Interrupted(f"interrupted ({error.sigval.name}); {resume}", error.sigval.name)
    if isinstance(error, ChildFailedError):
        rank, failure = error.get_first_failure()
        if failure.exitcode == GroupLost.exit_code:
            return GroupLost(f"rank {rank} stopped: a rank of its group on another node went away (that node's "
                             f"launcher names it); {resume}")
        if failure.exitcode >= 0:
            return None  # the worker's own line says what went wrong
        return MaskclsError(f"rank {rank} (local rank {failure.local_rank}, pid {failure.pid}) died of "
                            f"{failure.signal_name()}; {resume}")
    return MaskclsError(f"torchrun's agent failed at {endpoint}: {type(error).__name__}: {first_line(error)}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    with fail_cleanly():
        if not argv or argv[0] not in ENTRIES:
            raise ConfigError(f"name the entry point to launch: one of {', '.join(ENTRIES)}, then its arguments")
        cfg = parse(argv[1:], ENTRIES[argv[0]], prog=argv[0])
        args, endpoint, nodes = torchrun_args(cfg.name)
        refuse_busy(cfg)
        from torch.distributed.elastic.rendezvous.api import RendezvousConnectionError
        from torch.distributed.run import parse_args, run

        for name in ("torch.distributed.elastic", "torch.distributed.run"):  # the agent's notes: the line says it
            logging.getLogger(name).setLevel(logging.CRITICAL)
        os.environ[LAUNCHED] = "1"
        # each rendezvous round's process group gets a store of its own: on torch's shared agent store a restarted
        # gloo group reads the dead round's addresses and never connects
        os.environ["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] = "1"
        try:
            with interruptible(lambda name: f"interrupted ({name}); {RESUME}"):
                try:
                    run(parse_args([*args, *argv]))
                except RendezvousConnectionError:
                    if "is_host=true" not in " ".join(args):
                        raise
                    # another launcher of this machine took the port between our look and torch's: join it instead
                    run(parse_args([*torchrun_args(cfg.name, hosts=False)[0], *argv]))
        except MaskclsError:
            raise
        except Exception as e:
            line = ended(e, endpoint, nodes, number("JOIN_TIMEOUT", 60, 1))
            if line is None:
                raise SystemExit(1) from None
            raise line from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
