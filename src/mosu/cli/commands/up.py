"""``mosu up``: API, scheduler and local executor in one command on an embedded SQLite
(the API in this process, the scheduler and its executor in a child process)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from mosu.cli import config
from mosu.core.api import NodeCreate
from mosu.core.errors import Conflict, InvalidInput

DEFAULT_GATEWAY_PORT = 8766

DataDirOpt = Annotated[
    Path, typer.Option("--data-dir", help="Where the database and job logs live.")
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        envvar="MOSU_EXECUTOR",
        help="local: processes on this machine; ray: replicas on a Ray cluster (docs/ray.md); "
        "simulated: the --nodes cluster, replicas run no process (docs/platform.md).",
    ),
]
SimNodesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--nodes",
        help="Nodes of the simulated executor, COUNTxGPUS:TYPE (e.g. 1000x8:H800); repeatable.",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address", envvar="MOSU_RAY_ADDRESS", help="HOST:PORT of the Ray head (GCS)."
    ),
]
SandboxOpt = Annotated[
    str,
    typer.Option(
        "--sandbox",
        envvar="MOSU_SANDBOX",
        help="How jobs run: users (a Unix user per tenant; root), bwrap (namespaces; "
        "not root), none (as this server's user: unsafe), auto (users as root, else bwrap).",
    ),
]
HomeRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--home-root",
        envvar="MOSU_HOME_ROOT",
        help="Where tenants' homes live (default /var/lib/mosu/homes as root, else "
        "DATA_DIR/homes).",
    ),
]
GpuVendorOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu-vendor",
        help="Who makes the GPUs: nvidia, huawei, amd or cambricon (default: from the type).",
    ),
]
CgroupOpt = Annotated[
    str,
    typer.Option(
        "--cgroup",
        envvar="MOSU_CGROUP",
        help="Cgroup hierarchy that tracks each replica's processes: auto, v2, v1 or none.",
    ),
]


def _local_nodes(
    gpus: int | None, gpu_type: str | None, gpu_vendor: str | None, node_name: str | None
) -> tuple[list[NodeCreate], list[str]]:
    """This machine as nodes (one per GPU type it has), and a line describing each."""
    from mosu.agent.gpus import local_gpus, local_node_name

    found, notes = local_gpus(
        node_name=node_name or local_node_name(),
        gpus=gpus,
        gpu_type=gpu_type,
        gpu_vendor=gpu_vendor,
    )
    cpu = float(os.cpu_count() or 1)
    mem_mib = _memory_mib()
    nodes, lines = [], []
    for g in found:
        nodes.append(
            NodeCreate(
                name=g.name,
                gpu_type=g.gpu_type,
                gpu_vendor=g.vendor.value,
                gpus=g.count,
                cpu=cpu,
                memory=mem_mib,
                gpu_memory=g.memory_mib,
            )
        )
        lines.append(f"node {g.name}: {g.count} x {g.gpu_type} ({g.vendor.value}, {g.source})")
    return nodes, lines + [f"note: {n}" for n in notes]


def _simulated_nodes(specs: list[str] | None) -> list[Any]:
    """The simulated executor's nodes from ``--nodes`` (names kept unique across specs)."""
    from mosu.traces.native import parse_cluster_spec

    if not specs:
        raise InvalidInput("the simulated executor needs --nodes COUNTxGPUS:TYPE", field="--nodes")
    try:
        return parse_cluster_spec(",".join(specs))
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field="--nodes") from None


def _tracking(cgroup: str) -> str:
    """How the local executor finds a replica's processes (banner)."""
    from mosu.agent import cgroups

    found = cgroups.detect(cgroup)
    fallback = "process tree (child subreaper) and environment marker"
    return found.describe() if found is not None else fallback


def _memory_mib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class ExecutorPlan:
    """What the scheduler process needs to build its executor (it lives there)."""

    kind: str
    instance: str
    simulated: list[Any] = field(default_factory=list)
    down_file: Path | None = None
    ray_address: str | None = None
    ray_log_dir: str = ""
    sandbox: Any = None
    cgroup: str = "auto"
    pool_dir: Path | None = None


def build_executor(plan: ExecutorPlan) -> Any:
    if plan.kind == "ray":
        from mosu.agent.executors.ray_executor import RayExecutor

        runner = RayExecutor(
            address=str(plan.ray_address),
            instance=plan.instance,
            remote_log_dir=plan.ray_log_dir,
        )
        runner.gangs.connect()  # from the main thread, and fail early if Ray is unreachable
        return runner
    if plan.kind == "simulated":
        from mosu.agent.executors.simulated import SimulatedExecutor

        return SimulatedExecutor(plan.simulated, down_file=plan.down_file)
    from mosu.agent.executors.local import LocalExecutor

    return LocalExecutor(
        instance=plan.instance,
        sandbox=plan.sandbox,
        cgroup=plan.cgroup,
        pool_dir=plan.pool_dir,
    )


def scheduler_main(ready: Any, settings: Any, plan: ExecutorPlan) -> None:
    """The scheduler process: its executor, then the loop until told to stop."""
    from mosu.service.scheduler_process import run_scheduler

    run_scheduler(settings, build_executor(plan), ready)


def multiprocess_metrics(data_dir: Path, port: int) -> None:
    """Counted metrics in files every process of this server writes and a scrape of any
    of them sums (``PROMETHEUS_MULTIPROC_DIR``), emptied at start; set before
    ``prometheus_client`` is imported, which reads it then."""
    from mosu.service.private_files import private_dir

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    data = data_dir.expanduser().absolute()
    where = data / "metrics" / str(port)
    shutil.rmtree(where, ignore_errors=True)
    private_dir(data)
    private_dir(data / "metrics")
    private_dir(where)
    # prometheus_client creates its files with a plain open(): only the process umask
    # keeps them private, and this process writes nothing meant for other users.
    os.umask(0o077)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(where)


def run(
    *,
    data_dir: Path,
    database_url: str | None,
    host: str,
    port: int,
    grace: float,
    gpus: int | None,
    gpu_type: str | None,
    node_name: str | None,
    declare_node: bool,
    gpu_vendor: str | None = None,
    save_config: bool,
    profile: str = "mosu",
    min_runtime: float | None = None,
    placement: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
    sandbox: str = "auto",
    home_root: Path | None = None,
    cgroup: str = "auto",
    sim_nodes: list[str] | None = None,
    gateway_port: int | None = None,
    gateway_port_default: bool = False,
    workers: int = 1,
) -> None:
    if workers < 1:
        raise InvalidInput("must be 1 or more", field="--workers")
    from mosu.agent.sandbox import SandboxUnavailable, resolve
    from mosu.service.platform import load_profile
    from mosu.service.private_files import open_to_others
    from mosu.service.scheduler_process import SchedulerProcess
    from mosu.service.settings import Settings

    if gpus is not None and gpus < 0:
        raise InvalidInput("must be 0 or more", field="--gpus")
    if executor not in ("local", "ray", "simulated"):
        raise InvalidInput(
            f"unknown executor {executor!r}; use local, ray or simulated", field="--executor"
        )
    if sim_nodes and executor != "simulated":
        raise InvalidInput("only the simulated executor takes --nodes", field="--nodes")
    simulated = _simulated_nodes(sim_nodes) if executor == "simulated" else []
    if executor == "ray" and not ray_address:
        raise InvalidInput("the ray executor needs the cluster's HOST:PORT", field="--ray-address")
    if executor in ("ray", "simulated"):
        declare_node = False  # the Ray cluster (or --nodes) says which nodes exist
    overrides: dict[str, object] = {"data_dir": data_dir.expanduser(), "host": host, "port": port}
    overrides["grace_s"] = grace
    overrides["profile"] = profile
    if placement is not None:
        overrides["placement"] = placement
    overrides["executor"] = executor
    if cgroup not in ("auto", "v2", "v1", "none"):
        raise InvalidInput(f"unknown cgroup {cgroup!r}; use auto, v2, v1 or none", field="--cgroup")
    overrides["sandbox"] = sandbox
    overrides["cgroup"] = cgroup
    if home_root is not None:
        overrides["home_root"] = home_root.expanduser().absolute()
    if ray_address is not None:
        overrides["ray_address"] = ray_address
    if min_runtime is not None:
        overrides["min_runtime_s"] = min_runtime
    if database_url is not None:
        overrides["database_url"] = database_url
    settings = Settings(**overrides)  # type: ignore[arg-type]
    # An unknown profile or placement is one line now, before any executor starts.
    load_profile(settings.profile, placement=settings.placement)
    nodes, node_lines = (
        _local_nodes(gpus, gpu_type, gpu_vendor, node_name) if declare_node else ([], [])
    )
    url = f"http://{host}:{port}"
    data = settings.data_dir.absolute()
    hidden = (str(data), str(Path.home()), str(config.config_path().absolute().parent))
    box = None  # on Ray, each node runs replicas in its own sandbox
    if executor == "local":
        try:
            box = resolve(
                sandbox,
                home_root=settings.home_root,
                fallback_home_root=data / "homes",
                hide=hidden,
            )
        except SandboxUnavailable as exc:
            raise InvalidInput(str(exc), field="--sandbox") from None
    # Checked: now the server's files, and prometheus_client imported in multiprocess mode.
    multiprocess_metrics(data_dir, port)
    from mosu.service.main import instance_id, serve

    exposed = open_to_others(data)
    gateway_note = ""
    if gateway_port is not None:
        from mosu.service.main import _check_port

        if not 0 < gateway_port < 65536 or gateway_port == port:
            raise InvalidInput("must be a free port other than --port", field="--gateway-port")
        try:
            _check_port(host, gateway_port)
        except Conflict:
            if not gateway_port_default:
                raise InvalidInput(
                    f"cannot listen on {host}:{gateway_port}; choose another",
                    field="--gateway-port",
                ) from None
            # The default port taken (another mosu on this machine): serve without one.
            gateway_note = f"gateway: port {gateway_port} is taken; not started (--gateway-port)"
            gateway_port = None
    gateway_proc: list[Any] = []

    def ready(token: str | None) -> None:
        print(f"mosu is up at {url}", flush=True)
        if gateway_port is not None:
            from mosu.gateway.server import spawn_gateway

            gateway_proc.append(
                spawn_gateway(
                    settings.sqlalchemy_url,
                    host=host,
                    port=gateway_port,
                    log_path=settings.data_dir / "gateway.log",
                )
            )
            print(f"gateway (OpenAI-compatible) at http://{host}:{gateway_port}/v1", flush=True)
        elif gateway_note:
            print(gateway_note, flush=True)
        for line in node_lines:
            print(line, flush=True)
        if executor == "ray":
            print(f"executor: Ray cluster at {ray_address} (nodes from Ray)", flush=True)
            print("sandbox: per node (mosu node list), as each Ray node runs it", flush=True)
        elif executor == "simulated":
            gpus_total = sum(n.gpus for n in simulated)
            print(f"executor: simulated, {len(simulated)} nodes, {gpus_total} GPUs", flush=True)
        elif box is not None:
            print(f"sandbox: {box.describe()}", flush=True)
            print(f"processes tracked by: {_tracking(cgroup)}", flush=True)
        if exposed:
            print(f"warning: {data} is open to other users; chmod 700 it", flush=True)
        if token is not None:
            print(f"operator token: {token}", flush=True)
        if save_config:
            saved = config.load()
            keep = token or settings.operator_token or saved.token
            if keep:
                path = config.save(url, keep)
                print(f"client config saved to {path}", flush=True)
        elif token is None:
            print("operator token: unchanged (shown when it was created)", flush=True)

    plan = ExecutorPlan(
        kind=executor,
        instance=instance_id(settings),
        simulated=simulated,
        down_file=settings.data_dir / "simulated-down",
        ray_address=ray_address,
        ray_log_dir=settings.ray_log_dir,
        sandbox=box,
        cgroup=cgroup,
        pool_dir=settings.data_dir / "supervisors",
    )
    scheduler = SchedulerProcess(scheduler_main, (settings, plan))
    try:
        serve(
            settings,
            scheduler,
            workers=workers,
            local_nodes=nodes,
            sandbox=box.mode if box is not None else "none",
            on_ready=ready,
        )
    finally:
        for proc in gateway_proc:
            proc.terminate()
            try:
                proc.wait(15)
            except Exception:
                proc.kill()


def up(
    data_dir: DataDirOpt = Path("~/.mosu"),
    host: Annotated[str, typer.Option(help="Listen address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Listen port.")] = 8765,
    gpus: Annotated[
        int | None,
        typer.Option(
            help="Declare this many GPUs (default: what nvidia-smi, npu-smi, amd-smi or "
            "rocm-smi, cnmon find, else 8)."
        ),
    ] = None,
    gpu_type: Annotated[
        str | None, typer.Option("--gpu-type", help="Declared GPU type (default H800).")
    ] = None,
    gpu_vendor: GpuVendorOpt = None,
    node_name: Annotated[str | None, typer.Option(help="Name of this node.")] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds between SIGTERM and SIGKILL on preempt/cancel.")
    ] = 30.0,
    profile: Annotated[str, typer.Option(help="Scheduling profile (engine policy).")] = "mosu",
    placement: Annotated[
        str | None,
        typer.Option(help="Placement instead of the profile's (mosu policy list names them)."),
    ] = None,
    min_runtime: Annotated[
        float | None,
        typer.Option(help="Seconds a job runs before it may be preempted (profile default)."),
    ] = None,
    executor: ExecutorOpt = "local",
    ray_address: RayAddressOpt = None,
    sandbox: SandboxOpt = "auto",
    home_root: HomeRootOpt = None,
    cgroup: CgroupOpt = "auto",
    nodes: SimNodesOpt = None,
    gateway_port: Annotated[
        int | None,
        typer.Option(
            envvar="MOSU_GATEWAY_PORT",
            help="Port of the OpenAI-compatible gateway to model services (default 8766; 0: none).",
        ),
    ] = None,
) -> None:
    """Run everything on this machine: API, scheduler and local executor (SQLite).

    Stopping it (Ctrl-C) leaves running jobs running: the next start adopts them. To
    stop them, drain the node first: mosu node drain NODE --stop-jobs."""
    run(
        sandbox=sandbox,
        home_root=home_root,
        cgroup=cgroup,
        gateway_port=DEFAULT_GATEWAY_PORT if gateway_port is None else (gateway_port or None),
        gateway_port_default=gateway_port is None,
        executor=executor,
        ray_address=ray_address,
        profile=profile,
        placement=placement,
        min_runtime=min_runtime,
        data_dir=data_dir,
        database_url=None,
        host=host,
        port=port,
        grace=grace,
        gpus=gpus,
        gpu_type=gpu_type,
        gpu_vendor=gpu_vendor,
        node_name=node_name,
        declare_node=True,
        save_config=True,
        sim_nodes=nodes,
    )
