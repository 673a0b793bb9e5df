"""The hook's decision at container start (its cleanup at poststop is :func:`hook.records.remove_record`).

At ``createRuntime`` (or ``prestart``), in this order, so that a refused container changes nothing:

1. No ``tessera.io/grant.*`` annotation and no ``TESSERA_GRANT_*`` variable (the DRA driver's grants,
   set by its CDI spec): the container starts unless its spec would reach a GPU device node
   (namespaces in ``exempt_namespaces`` excepted); nothing is written.
2. A grant: the pod's UID must be known (from the configured runtime's keys), every grant must
   verify with the node key, MPS grants need the MPS user, the environment must say exactly what
   the grants say, and the spec may reach only the granted device nodes (a privileged container
   only with ``allow_privileged``). Then the v1 device cgroup is tightened, each grant's nonce is
   bound to the pod, and the container is recorded for the exporter.
"""

from __future__ import annotations

from hook.container import IDENTITY_KEYS, ContainerSpec, OciState, read_spec
from hook.devices import (
    GpuMajors, check_granted, check_present, check_ungranted, privileged, read_cgroups, read_majors, tighten_cgroup,
)
from hook.errors import HookFailure, Refused
from hook.settings import HookSettings

GRANT_ANNOTATION_PREFIX = "tessera.io/grant."  # tessera.grant's; imported only where a grant is found
GRANT_ENV_PREFIX = "TESSERA_GRANT_"   # the DRA driver's grants, in the environment its CDI spec sets


def _majors(spec: ContainerSpec) -> GpuMajors:
    """Read /proc/devices only where the spec names devices at all."""
    return read_majors() if spec.devices or spec.device_rules else GpuMajors(set(), set())


def start(state: OciState, settings: HookSettings, spec: ContainerSpec | None = None) -> str | None:
    """Admit or refuse the container; the path of its record where one was written."""
    spec = spec if spec is not None else read_spec(state.bundle)
    annotated = {k: v for k, v in spec.annotations.items() if k.startswith(GRANT_ANNOTATION_PREFIX)}
    in_env = [item for item in spec.env if item.startswith(GRANT_ENV_PREFIX)]
    pod = spec.identity(settings.runtime)
    who = f"pod {pod.describe()}" if pod.name else f"container {state.id}"
    if not annotated and not in_env:
        if pod.namespace and pod.namespace in settings.exempt_namespaces:
            return None
        check_ungranted(spec.devices, spec.device_rules, spec.mounts, _majors(spec), who)
        return None
    return _start_granted(state, settings, spec, annotated, pod, who)


def _start_granted(state: OciState, settings: HookSettings, spec: ContainerSpec, annotated: dict[str, str],
                   pod, who: str) -> str:
    """Verify, check, bind and record a container that carries grants."""
    from hook.environment import check_environment, check_mps
    from hook.records import bind_grant, write_record
    from tessera.grant import GrantError, grant_env_entries, load_key, verify, verify_env

    if not pod.uid:
        raise Refused(f"container {state.id} carries a Tessera grant but no pod UID in annotation "
                      f"{IDENTITY_KEYS[settings.runtime][0]}: is the hook's --runtime ({settings.runtime}) "
                      "this node's container runtime?")
    try:
        key = load_key(settings.grant_key_path)
    except GrantError as err:
        raise HookFailure(str(err)) from None
    try:
        grants = [verify(k, v, key) for k, v in sorted(annotated.items())]
        for name, value in grant_env_entries(spec.env):
            grant = verify_env(name, value, key)
            if grant not in grants:   # a variable's copies (the pod's own and the CDI spec's) count once
                grants.append(grant)
    except GrantError as err:
        raise Refused(f"{who}: {err}") from None
    paths = {p for g in grants for p in g.paths}
    check_present(spec.devices, paths, who)
    check_mps(spec, grants, settings.mps_user, who)
    env = check_environment(spec, grants, who)
    majors = read_majors()
    numbers = None
    if privileged(spec.device_rules):
        if not settings.allow_privileged:
            raise Refused(f"{who} is privileged and carries a GPU grant: a privileged container reaches every "
                          "GPU; drop privileged, or set the hook's allow_privileged")
    else:
        numbers = check_granted(spec.devices, spec.device_rules, spec.mounts, majors, paths, who)
    cgroups = read_cgroups(state.pid) if state.pid else {}
    if numbers is not None:
        tighten_cgroup(cgroups, numbers, majors)
    for grant in grants:
        bind_grant(settings.state_dir, grant, pod.uid)
    return write_record(settings.state_dir, state, pod, grants, cgroups, env)

