"""The docker backend: the shared runner's fork-server in warm, hardened containers.

Each zygote is one container of the sandbox image (`sandbox_images/`), created through the
Docker API with no network, a read-only root filesystem and no writable mount, every capability
dropped, no-new-privileges, the project's seccomp profile, uid 65534, pids/memory/CPU limits and
no IPC namespace sharing. The runner is the container's PID 1 (no init process). Requests and
answers travel over the container's attached stdin/stdout; nothing is `docker exec`ed per item.

Lifecycle: the pool replaces a zygote after `docker_recycle_after` executions or any failure,
and `kill` removes its container (`auto_remove`). Containers are labelled with their owner; at
start-up the launcher removes the containers a dead owner left behind. A crashed service's
containers also end by themselves: closing the attach stream closes their stdin (`stdin_once`),
the runner exits and Docker removes them.

One module per job (docs/design.md §4):

- `daemon`: reaching dockerd, and the errors any Docker API call can raise;
- `preflight`: what must hold before a container starts (the image and its runner, the seccomp
  profile, what the host's cgroups can enforce);
- `hardening`: the settings every sandbox container is created with;
- `labels` and `orphans`: who owns a container, and the start-up sweep of abandoned ones;
- `attach_stream`: one zygote spoken to over the container's multiplexed attach stream;
- `launcher`: `DockerLauncher`, the `ZygoteLauncher` that ties them together.
"""
